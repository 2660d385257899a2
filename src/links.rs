//! Where emails send people: pages of the web app at `PUBLIC_APP_URL`, whose paths are part
//! of the contract with the web app (README, "Links in emails") and which the API never
//! serves; and the one page the API serves itself, a reminder's one-tap extension.

use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct AppLinks {
    /// `PUBLIC_APP_URL`, without a trailing slash.
    base: String,
    /// `PUBLIC_BASE_URL` (the API's own), without a trailing slash.
    api_base: String,
}

impl AppLinks {
    pub fn new(public_app_url: &str, public_base_url: &str) -> Self {
        Self {
            base: public_app_url.trim_end_matches('/').to_owned(),
            api_base: public_base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// The API's own page behind a reminder's one-tap extension
    /// (`GET /v1/reservations/{id}/extend?token=…`): served by the API, not the web app, so
    /// the link works from any mail client.
    pub fn extend(&self, reservation_id: Uuid, token: &str) -> String {
        format!(
            "{}/v1/reservations/{reservation_id}/extend?token={token}",
            self.api_base
        )
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
        let links = AppLinks::new("https://app.example.com/", "https://api.example.com/");
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
        assert_eq!(
            links.extend(id, "1.2.ab"),
            format!("https://api.example.com/v1/reservations/{id}/extend?token=1.2.ab")
        );
    }
}
