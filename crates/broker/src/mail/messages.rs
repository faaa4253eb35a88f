//! What the broker's messages say. Each function composes one message from
//! what the action produced; sending is the caller's (see [`super::Mailer`]).
//! Plain text with short lines, so every mail client shows it as written.

use super::{Mail, MailError};
use crate::rental::Started;

/// The renter's login for a rental that just started: the same username,
/// password, `ssh` command and URLs as the rental page, and where to end it.
/// `public_url` is the broker's own address, for the link to My rentals.
pub fn rental_credentials(
    to: &str,
    started: &Started,
    public_url: &str,
) -> Result<Mail, MailError> {
    let ssh = started
        .ssh_command()
        .unwrap_or_else(|| "(the device has no public SSH port yet)".into());
    let body = format!(
        "You are renting {device} (rental {rental}).\n\
         \n\
         Username: {username}\n\
         Password: {password}\n\
         SSH:      {ssh}\n\
         Web:      {http}\n\
         \x20         {https}\n\
         \n\
         This is the only copy of the password besides the page you saw;\n\
         the broker does not keep it. Delete this message once it is saved.\n\
         \n\
         End the rental from My rentals; the sandbox is then wiped:\n\
         {public_url}/rentals\n",
        device = started.device,
        rental = started.rental,
        username = started.username,
        password = started.password,
        http = started.http_url,
        https = started.https_url,
    );
    Mail::new(to, format!("Your login on {}", started.device), body)
}

/// A link to choose a new password, valid for `valid_minutes`.
pub fn password_reset(to: &str, link: &str, valid_minutes: i64) -> Result<Mail, MailError> {
    let body = format!(
        "Someone, probably you, asked to reset the password of the rpibroker\n\
         account {to}.\n\
         \n\
         Choose a new password here (the link works once, for {valid_minutes} minutes):\n\
         {link}\n\
         \n\
         If it was not you, ignore this message: your password stays as it is.\n"
    );
    Mail::new(to, "Reset your password".into(), body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rpibroker_wire::DeviceName;
    use rpibroker_wire::control::RentalId;

    fn started() -> Started {
        Started {
            rental: RentalId::parse("rnt-0011223344556677").unwrap(),
            device: DeviceName::parse("pi-kitchen").unwrap(),
            username: "renter7".into(),
            password: "Xk3-pq9-Zt2".into(),
            ssh_keys: 0,
            ssh_host: "pi-kitchen.example.org".into(),
            ssh_port: Some(20001),
            http_url: "http://pi-kitchen.example.org/".into(),
            https_url: "https://pi-kitchen.example.org:8443/".into(),
        }
    }

    #[test]
    fn the_credentials_mail_says_what_the_rental_page_shows() {
        let mail = rental_credentials(
            "Renter@Example.org",
            &started(),
            "https://broker.example.org",
        )
        .unwrap();
        assert_eq!(mail.to.to_string(), "Renter@Example.org");
        assert_eq!(mail.subject, "Your login on pi-kitchen");
        for expected in [
            "Username: renter7\n",
            "Password: Xk3-pq9-Zt2\n",
            "ssh -p 20001 renter7@pi-kitchen.example.org\n",
            "http://pi-kitchen.example.org/\n",
            "https://pi-kitchen.example.org:8443/\n",
            "https://broker.example.org/rentals\n",
        ] {
            assert!(
                mail.body.contains(expected),
                "{expected:?} in {}",
                mail.body
            );
        }
        assert!(
            mail.body.lines().all(|l| l.len() <= 76 && l.is_ascii()),
            "short ASCII lines, sent as written"
        );
    }

    #[test]
    fn the_reset_mail_carries_the_link_and_bad_addresses_are_refused() {
        let link = format!(
            "https://broker.example.org/password/reset/{}",
            "ab".repeat(32)
        );
        let mail = password_reset("alice@example.org", &link, 60).unwrap();
        assert!(mail.body.contains(&format!("\n{link}\n")), "{}", mail.body);
        assert!(mail.body.contains("60 minutes"));
        assert!(matches!(
            password_reset("not an address", &link, 60),
            Err(MailError::BadAddress)
        ));
        assert!(matches!(
            password_reset("a@example.org\r\nBcc: x@evil.example", &link, 60),
            Err(MailError::BadAddress)
        ));
    }
}
