//! Where emails send people: pages of the web app at `PUBLIC_APP_URL`. The paths are part of
//! the contract with the web app (README, "Links in emails"); the API never serves them.

use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct AppLinks {
    /// `PUBLIC_APP_URL`, without a trailing slash.
    base: String,
}

impl AppLinks {
    pub fn new(public_app_url: &str) -> Self {
        Self {
            base: public_app_url.trim_end_matches('/').to_owned(),
        }
    }

    /// `/reservations/{id}/payment`: the page that reads `GET /v1/reservations/{id}/payment`
    /// and does what it says (authenticate, give another card).
    pub fn payment(&self, reservation_id: Uuid) -> String {
        format!("{}/reservations/{reservation_id}/payment", self.base)
    }

    /// `/reservations/{id}/receipt`: the receipt, from `GET /v1/reservations/{id}/receipt`.
    pub fn receipt(&self, reservation_id: Uuid) -> String {
        format!("{}/reservations/{reservation_id}/receipt", self.base)
    }

    /// `/reservations/access`: where a guest asks for new links by email
    /// (`POST /v1/reservations/access`).
    pub fn request_access(&self) -> String {
        format!("{}/reservations/access", self.base)
    }

    /// `/reservations/{id}/access?code={code}`: the page that exchanges the emailed code for
    /// a new guest token (`POST /v1/reservations/{id}/access`).
    pub fn access(&self, reservation_id: Uuid, code: &str) -> String {
        format!(
            "{}/reservations/{reservation_id}/access?code={code}",
            self.base
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_join_the_app_url_and_the_documented_paths() {
        let links = AppLinks::new("https://app.example.com/");
        let id = Uuid::nil();
        assert_eq!(
            links.payment(id),
            format!("https://app.example.com/reservations/{id}/payment")
        );
        assert_eq!(
            links.access(id, "abc"),
            format!("https://app.example.com/reservations/{id}/access?code=abc")
        );
        assert_eq!(
            links.request_access(),
            "https://app.example.com/reservations/access"
        );
    }
}
