//! `curbside import-meters`: NYC Open Data's "Parking Meters Locations and Status" CSV
//! (dataset `693u-uax6`) into `spots`.
//!
//! Rows are upserted by meter number in one transaction, so a re-run changes nothing, a
//! newer file updates what changed, and a failure leaves the table as it was. Bad rows are
//! reported with their line numbers and skipped; they never stop the import. The import
//! refreshes what the city publishes (place, street, posted rule) and never touches what
//! operators own (rate, active).

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read};

use anyhow::{Context as _, bail};
use sqlx::PgConnection;
use uuid::Uuid;

use super::rules;

/// The city's meters as of the snapshot in `data/` (see `data/README.md`), compiled into the
/// binary so that a fresh installation serves New York without a download.
pub static NYC_SNAPSHOT: &[u8] = include_bytes!("../../data/nyc-parking-meters.csv.gz");

/// Used when a rule is missing or unreadable: NYC's most common posted limit.
pub const DEFAULT_MAX_STAY_MINUTES: i32 = 120;
/// Rows per INSERT statement.
const BATCH_SIZE: usize = 1000;

/// Hourly rates by borough. The file has no rates; the defaults approximate NYC DOT's 2023
/// passenger meter rates, and operators set real ones per spot afterwards.
#[derive(Debug, Clone)]
pub struct RateTable {
    by_borough: HashMap<String, i32>,
    /// For a borough the table does not name.
    pub default_cents: i32,
}

impl Default for RateTable {
    fn default() -> Self {
        let by_borough = [
            ("Manhattan", 450),
            ("Brooklyn", 250),
            ("Queens", 250),
            ("Bronx", 200),
            ("Staten Island", 150),
        ]
        .into_iter()
        .map(|(borough, cents)| (borough.to_owned(), cents))
        .collect();
        Self {
            by_borough,
            default_cents: 250,
        }
    }
}

impl RateTable {
    /// Applies an override of the form `Borough=cents`, e.g. `Manhattan=500`. A borough the
    /// table does not know is refused: a typo would otherwise change nothing, silently.
    pub fn set(&mut self, spec: &str) -> anyhow::Result<()> {
        let (borough, cents) = spec
            .split_once('=')
            .with_context(|| format!("`{spec}` is not of the form BOROUGH=CENTS"))?;
        let borough = normalize_borough(borough);
        if !self.by_borough.contains_key(&borough) {
            let mut known: Vec<&str> = self.by_borough.keys().map(String::as_str).collect();
            known.sort_unstable();
            bail!(
                "`{borough}` is not a borough; use one of {} (or --default-rate for the rest)",
                known.join(", ")
            );
        }
        let cents: i32 = cents
            .trim()
            .parse()
            .ok()
            .filter(|c| (0..=100_000).contains(c))
            .with_context(|| format!("`{cents}` is not a rate in cents from 0 to 100000"))?;
        self.by_borough.insert(borough, cents);
        Ok(())
    }

    pub fn cents_for(&self, borough: &str) -> i32 {
        self.by_borough
            .get(borough)
            .copied()
            .unwrap_or(self.default_cents)
    }
}

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Rows left out, with the line they start on and why.
    pub skipped: Vec<(u64, String)>,
    /// Rows whose rule could not be read, given the default maximum stay.
    pub unparsed_rules: u64,
}

/// One meter, normalised.
#[derive(Debug, Clone, PartialEq)]
struct Meter {
    meter_number: String,
    lat: f64,
    lng: f64,
    borough: String,
    street: Option<String>,
    side: Option<String>,
    from_street: Option<String>,
    to_street: Option<String>,
    facility: &'static str,
    rule: Option<String>,
    max_stay_minutes: i32,
    rate_cents_per_hour: i32,
}

/// Where each needed column is in this file's header.
struct Columns {
    meter_number: usize,
    lat: usize,
    lng: usize,
    borough: Option<usize>,
    street: Option<usize>,
    side: Option<usize>,
    from_street: Option<usize>,
    to_street: Option<usize>,
    facility: Option<usize>,
    rule: Option<usize>,
}

impl Columns {
    fn find(header: &csv::StringRecord) -> anyhow::Result<Self> {
        let position = |name: &str| {
            header
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(name))
        };
        let required = |name: &str| {
            position(name).with_context(|| format!("the header has no `{name}` column"))
        };
        Ok(Self {
            meter_number: required("Meter Number")?,
            lat: required("Latitude")?,
            lng: required("Longitude")?,
            borough: position("Borough"),
            street: position("On_Street"),
            side: position("Side_of_Street"),
            from_street: position("From_Street"),
            to_street: position("To_Street"),
            facility: position("Facility"),
            rule: position("Meter_Hours"),
        })
    }
}

/// Reads the CSV, plain or gzip-compressed, and upserts its meters in one transaction.
/// `progress` is called with the number of rows written so far.
pub async fn import_meters(
    conn: &mut PgConnection,
    input: impl Read,
    rates: &RateTable,
    mut progress: impl FnMut(usize, usize),
) -> anyhow::Result<ImportReport> {
    let mut report = ImportReport::default();
    let input = plain_or_gzip(input).context("cannot read the file")?;
    let meters = read_meters(input, rates, &mut report)?;

    let mut tx = sqlx::Connection::begin(conn).await?;
    for (done, batch) in meters.chunks(BATCH_SIZE).enumerate() {
        let (inserted, updated) = upsert(&mut tx, batch).await?;
        report.inserted += inserted;
        report.updated += updated;
        progress(
            (done * BATCH_SIZE + batch.len()).min(meters.len()),
            meters.len(),
        );
    }
    tx.commit().await.context("cannot commit the import")?;
    report.unchanged = meters.len() as u64 - report.inserted - report.updated;
    Ok(report)
}

/// Whether any spot exists: `import-meters --if-empty` imports only into an empty city.
pub async fn has_spots(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar!(r#"select exists (select 1 from spots) as "any!""#)
        .fetch_one(conn)
        .await
}

/// The input itself, or its decompression when it starts with gzip's magic bytes.
fn plain_or_gzip<'a>(input: impl Read + 'a) -> std::io::Result<Box<dyn Read + 'a>> {
    let mut input = BufReader::new(input);
    if input.fill_buf()?.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(input)))
    } else {
        Ok(Box::new(input))
    }
}

/// Parses every row; bad rows go to the report. A later row for the same meter wins.
fn read_meters(
    input: impl Read,
    rates: &RateTable,
    report: &mut ImportReport,
) -> anyhow::Result<Vec<Meter>> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
    let header = reader
        .headers()
        .context("cannot read the header row")?
        .clone();
    if header.is_empty() || header.iter().all(|h| h.trim().is_empty()) {
        bail!("the file is empty: no header row");
    }
    let columns = Columns::find(&header)?;

    let mut meters: Vec<Meter> = Vec::new();
    let mut index_of: HashMap<String, (usize, u64)> = HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(0, csv::Position::line);
                report.skipped.push((line, malformed_reason(&error)));
                continue;
            }
        };
        let line = record.position().map_or(0, csv::Position::line);
        match parse_meter(&record, &columns, rates) {
            Ok((meter, rule_read)) => {
                if !rule_read {
                    report.unparsed_rules += 1;
                }
                match index_of.get(&meter.meter_number) {
                    Some(&(at, first_line)) => {
                        report.skipped.push((
                            first_line,
                            format!("meter {} appears again on line {line}", meter.meter_number),
                        ));
                        index_of.insert(meter.meter_number.clone(), (at, line));
                        meters[at] = meter;
                    }
                    None => {
                        index_of.insert(meter.meter_number.clone(), (meters.len(), line));
                        meters.push(meter);
                    }
                }
            }
            Err(reason) => report.skipped.push((line, reason)),
        }
    }
    report.skipped.sort();
    Ok(meters)
}

fn malformed_reason(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!(
            "malformed record: {len} fields where the header has {expected_len} (broken quoting?)"
        ),
        csv::ErrorKind::Utf8 { .. } => "malformed record: not valid UTF-8".to_owned(),
        _ => format!("malformed record: {error}"),
    }
}

/// One row to a meter, and whether its rule could be read.
fn parse_meter(
    record: &csv::StringRecord,
    columns: &Columns,
    rates: &RateTable,
) -> Result<(Meter, bool), String> {
    let text = |index: Option<usize>| {
        index
            .and_then(|i| record.get(i))
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    let meter_number = text(Some(columns.meter_number)).ok_or("no meter number")?;
    let lat = coordinate(record.get(columns.lat), "latitude", 90.0)?;
    let lng = coordinate(record.get(columns.lng), "longitude", 180.0)?;
    if lat == 0.0 && lng == 0.0 {
        return Err("coordinates 0, 0 are a placeholder, not a place".into());
    }
    let borough =
        text(columns.borough).map_or_else(|| "Unknown".to_owned(), |b| normalize_borough(&b));
    let facility =
        match text(columns.facility).map(|f| f.to_ascii_lowercase().replace(['_', '-'], " ")) {
            Some(f) if f.split_whitespace().eq(["off", "street"]) => "off_street",
            _ => "on_street",
        };
    let rule = text(columns.rule);
    let parsed = rule.as_deref().and_then(rules::max_stay_minutes);
    let max_stay_minutes = parsed
        .and_then(|minutes| i32::try_from(minutes.min(24 * 60)).ok())
        .unwrap_or(DEFAULT_MAX_STAY_MINUTES);
    let meter = Meter {
        rate_cents_per_hour: rates.cents_for(&borough),
        meter_number,
        lat,
        lng,
        borough,
        street: text(columns.street),
        side: text(columns.side).map(|s| s.to_uppercase()),
        from_street: text(columns.from_street),
        to_street: text(columns.to_street),
        facility,
        rule,
        max_stay_minutes,
    };
    Ok((meter, parsed.is_some()))
}

fn coordinate(raw: Option<&str>, name: &str, bound: f64) -> Result<f64, String> {
    let raw = raw.map(str::trim).filter(|r| !r.is_empty());
    let raw = raw.ok_or_else(|| format!("no {name}"))?;
    let value: f64 = raw
        .parse()
        .map_err(|_| format!("{name} `{raw}` is not a number"))?;
    if !value.is_finite() || value.abs() > bound {
        return Err(format!("{name} {raw} is out of range"));
    }
    Ok(value)
}

/// `QUeens`, ` queens ` → `Queens`; `staten island` → `Staten Island`.
fn normalize_borough(raw: &str) -> String {
    raw.split_whitespace()
        .map(|word| {
            let lower = word.to_lowercase();
            let mut chars = lower.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Inserts new meters and updates changed ones; returns (inserted, updated).
async fn upsert(conn: &mut PgConnection, batch: &[Meter]) -> sqlx::Result<(u64, u64)> {
    let column = |f: fn(&Meter) -> Option<String>| batch.iter().map(f).collect::<Vec<_>>();
    // The macro takes `text[]` for `Vec<String>` only: the columns with nulls and the
    // borrowed facility names are given their own types.
    let flags = sqlx::query_scalar!(
        r#"insert into spots (id, meter_number, lat, lng, borough, street, side, from_street,
                            to_street, facility, rule, max_stay_minutes, rate_cents_per_hour)
         select * from unnest($1::uuid[], $2::text[], $3::float8[], $4::float8[], $5::text[],
                              $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                              $11::text[], $12::int4[], $13::int4[])
         on conflict (meter_number) do update set
             lat = excluded.lat, lng = excluded.lng, borough = excluded.borough,
             street = excluded.street, side = excluded.side,
             from_street = excluded.from_street, to_street = excluded.to_street,
             facility = excluded.facility, rule = excluded.rule,
             max_stay_minutes = excluded.max_stay_minutes
         where (spots.lat, spots.lng, spots.borough, spots.street, spots.side,
                spots.from_street, spots.to_street, spots.facility, spots.rule,
                spots.max_stay_minutes)
               is distinct from
               (excluded.lat, excluded.lng, excluded.borough, excluded.street, excluded.side,
                excluded.from_street, excluded.to_street, excluded.facility, excluded.rule,
                excluded.max_stay_minutes)
         returning xmax = 0 as "inserted!""#,
        &batch.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>(),
        &batch
            .iter()
            .map(|m| m.meter_number.clone())
            .collect::<Vec<_>>(),
        &batch.iter().map(|m| m.lat).collect::<Vec<_>>(),
        &batch.iter().map(|m| m.lng).collect::<Vec<_>>(),
        &batch.iter().map(|m| m.borough.clone()).collect::<Vec<_>>(),
        column(|m| m.street.clone()) as Vec<Option<String>>,
        column(|m| m.side.clone()) as Vec<Option<String>>,
        column(|m| m.from_street.clone()) as Vec<Option<String>>,
        column(|m| m.to_street.clone()) as Vec<Option<String>>,
        batch.iter().map(|m| m.facility).collect::<Vec<_>>() as Vec<&str>,
        column(|m| m.rule.clone()) as Vec<Option<String>>,
        &batch.iter().map(|m| m.max_stay_minutes).collect::<Vec<_>>(),
        &batch
            .iter()
            .map(|m| m.rate_cents_per_hour)
            .collect::<Vec<_>>(),
    )
    .fetch_all(conn)
    .await?;
    let inserted = flags.iter().filter(|&&inserted| inserted).count() as u64;
    Ok((inserted, flags.len() as u64 - inserted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(csv: &str) -> (Vec<Meter>, ImportReport) {
        let mut report = ImportReport::default();
        let meters = read_meters(csv.as_bytes(), &RateTable::default(), &mut report).unwrap();
        (meters, report)
    }

    const HEADER: &str = "Meter Number,Meter_Hours,Facility,Borough,On_Street,Side_of_Street,From_Street,To_Street,Latitude,Longitude";

    #[test]
    fn normalises_the_messy_columns() {
        let csv = format!(
            "{HEADER}\n1,2HR Pas Mon-Sat 0900-1900,ON Street,QUeens,Main St,w,A Ave,B Ave,40.7,-73.8\n\
             2,,Off Street,staten  island,,,,,40.6,-74.1\n3,gibberish,,Manhattan,X,N,,,40.75,-73.98\n"
        );
        let (meters, report) = read(&csv);
        assert_eq!(meters.len(), 3);
        assert_eq!(
            (meters[0].borough.as_str(), meters[0].facility),
            ("Queens", "on_street")
        );
        assert_eq!(meters[0].side.as_deref(), Some("W"));
        assert_eq!(
            (meters[0].max_stay_minutes, meters[0].rate_cents_per_hour),
            (120, 250)
        );
        assert_eq!(
            (meters[1].borough.as_str(), meters[1].facility),
            ("Staten Island", "off_street")
        );
        assert_eq!(
            (meters[1].street.as_deref(), meters[1].rule.as_deref()),
            (None, None)
        );
        assert_eq!(meters[2].facility, "on_street");
        assert_eq!(meters[2].rule.as_deref(), Some("gibberish"));
        assert_eq!(meters[2].rate_cents_per_hour, 450);
        assert_eq!(report.unparsed_rules, 2);
    }

    #[test]
    fn reports_bad_rows_with_their_lines() {
        let csv = format!(
            "{HEADER}\n1,2HR Pas,On Street,Bronx,A,N,,,95.0,-73.9\n2,2HR Pas,On Street,Bronx,A,N,,,,\n\
             3,2HR Pas,On Street,Bronx,A,N,,,abc,-73.9\n4,2HR Pas,On Street,Bronx,A,N,,,40.8,-73.9\n\
             5,too,few,fields\n"
        );
        let (meters, report) = read(&csv);
        assert_eq!(meters.len(), 1);
        let lines: Vec<u64> = report.skipped.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [2, 3, 4, 6], "{:?}", report.skipped);
        assert!(report.skipped[0].1.contains("out of range"));
        assert!(report.skipped[3].1.contains("malformed"));
    }

    #[test]
    fn a_later_row_for_the_same_meter_wins() {
        let csv = format!(
            "{HEADER}\n7,2HR Pas,On Street,Bronx,Old St,N,,,40.8,-73.9\n7,3HR Pas,On Street,Bronx,New St,N,,,40.8,-73.9\n"
        );
        let (meters, report) = read(&csv);
        assert_eq!(meters.len(), 1);
        assert_eq!(meters[0].street.as_deref(), Some("New St"));
        assert_eq!(report.skipped.len(), 1);
    }

    #[test]
    fn a_byte_order_mark_does_not_hide_the_first_column() {
        let csv = format!("\u{feff}{HEADER}\n1,2HR Pas,On Street,Bronx,A,N,,,40.8,-73.9\n");
        let (meters, report) = read(&csv);
        assert_eq!(meters.len(), 1, "{report:?}");
    }

    #[test]
    fn a_file_without_the_needed_columns_is_refused() {
        let mut report = ImportReport::default();
        let error = read_meters("a,b\n1,2\n".as_bytes(), &RateTable::default(), &mut report);
        assert!(error.unwrap_err().to_string().contains("Meter Number"));
        let empty = read_meters("".as_bytes(), &RateTable::default(), &mut report);
        assert!(empty.unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn rate_overrides() {
        let mut rates = RateTable::default();
        rates.set("manhattan=600").unwrap();
        assert_eq!(rates.cents_for("Manhattan"), 600);
        assert!(rates.set("Manhattan").is_err());
        assert!(rates.set("Manhattan=-1").is_err());
        let typo = rates.set("Manhatan=500").unwrap_err().to_string();
        assert!(typo.contains("`Manhatan` is not a borough"), "{typo}");
        assert_eq!(rates.cents_for("Manhatan"), rates.default_cents);
    }

    #[test]
    fn the_embedded_snapshot_is_the_whole_city() {
        let mut report = ImportReport::default();
        let meters = read_meters(
            plain_or_gzip(NYC_SNAPSHOT).unwrap(),
            &RateTable::default(),
            &mut report,
        )
        .unwrap();
        assert_eq!(meters.len(), 13_415);
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    }

    #[test]
    fn plain_and_gzip_input_read_the_same() {
        let csv = "Meter Number,Latitude,Longitude\n1,40.7,-73.9\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, csv.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let read = |input: &[u8]| {
            let mut text = String::new();
            plain_or_gzip(input)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            text
        };
        assert_eq!(read(csv.as_bytes()), csv);
        assert_eq!(read(&gz), csv);
    }
}
