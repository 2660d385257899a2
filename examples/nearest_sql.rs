//! Prints the SQL of the nearest-spots search, so `bench/bench.py` can run the very same
//! query in pgbench as the ceiling the API is measured against.

fn main() {
    print!("{}", curbside::spots::NEAREST_SQL);
}
