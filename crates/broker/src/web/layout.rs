//! The page frame every web page shares: head, navigation, flash message,
//! footer and the small stylesheet. Server-rendered with maud, which escapes
//! every interpolated value.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::accounts::Session;

/// Styles for every page: readable on a phone, no external requests.
const CSS: &str = r#"
:root { color-scheme: light dark; --accent: #2563eb; --muted: #6b7280; --bad: #b91c1c; --ok: #15803d; }
* { box-sizing: border-box; }
body { font: 16px/1.5 system-ui, sans-serif; margin: 0; }
header { display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; align-items: center; padding: .75rem 1rem; border-bottom: 1px solid #8884; }
header .brand { font-weight: 700; text-decoration: none; color: inherit; }
header nav { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; flex: 1; }
header nav .right { margin-left: auto; display: flex; gap: 1rem; align-items: center; }
header nav a, header nav button { white-space: nowrap; }
main { max-width: 76rem; margin: 0 auto; padding: 1rem; }
a { color: var(--accent); }
form.stack { display: grid; gap: .75rem; max-width: 26rem; }
label { display: grid; gap: .25rem; font-weight: 600; }
input[type=email], input[type=password], input[type=text], input[type=number], select, textarea { font: inherit; padding: .5rem; border: 1px solid #8888; border-radius: .375rem; }
button { font: inherit; padding: .5rem 1rem; border: 0; border-radius: .375rem; background: var(--accent); color: #fff; cursor: pointer; }
button.link { background: none; color: var(--accent); padding: 0; text-decoration: underline; }
.hint { color: var(--muted); font-weight: 400; font-size: .9rem; }
.flash { padding: .75rem 1rem; border-radius: .375rem; margin-bottom: 1rem; }
.flash.error { background: #fee2e2; color: var(--bad); }
.flash.ok { background: #dcfce7; color: var(--ok); }
.table-wrap { overflow-x: auto; margin-bottom: 1.5rem; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: .5rem; border-bottom: 1px solid #8884; vertical-align: top; }
pre { overflow-x: auto; padding: .75rem; background: #8881; border-radius: .375rem; }
code { word-break: break-all; }
form.inline { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
label.check, label.inline { display: inline-flex; gap: .25rem; align-items: center; font-weight: 400; }
form.filters { display: grid; grid-template-columns: repeat(auto-fit, minmax(9rem, 1fr)); gap: .75rem; align-items: end; margin-bottom: 1rem; }
form.filters input { width: 100%; }
form.filters .checks { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center; }
nav.pages { display: flex; gap: 1rem; justify-content: center; align-items: center; }
.empty { padding: 2rem 1rem; text-align: center; color: var(--muted); border: 1px dashed #8886; border-radius: .5rem; }
footer { color: var(--muted); font-size: .85rem; text-align: center; padding: 2rem 1rem; }
"#;

/// A message shown above the page's content.
pub enum Flash {
    Error(String),
    Ok(String),
}

/// A whole page: `title`, the signed-in `session` (for the navigation) and
/// the content.
pub fn page(
    title: &str,
    session: Option<&Session>,
    flash: Option<Flash>,
    content: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · rpibroker" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    a.brand href="/" { "rpibroker" }
                    nav aria-label="main" {
                        a href="/" { "Marketplace" }
                        @if let Some(s) = session {
                            a href="/devices" { "My devices" }
                            a href="/rentals" { "My rentals" }
                            a href="/wallet" { "Wallet" }
                            a href="/earnings" { "Earnings" }
                            @if s.user.is_admin { a href="/admin" { "Admin" } }
                        }
                        div.right {
                            @match session {
                                Some(s) => {
                                    a href="/account" { (s.user.email) }
                                    form method="post" action="/signout" {
                                        input type="hidden" name="csrf" value=(s.csrf);
                                        button.link type="submit" { "Sign out" }
                                    }
                                }
                                None => {
                                    a href="/signin" { "Sign in" }
                                    a href="/signup" { "Sign up" }
                                }
                            }
                        }
                    }
                }
                main {
                    @match flash {
                        Some(Flash::Error(m)) => { p.flash.error role="alert" { (m) } }
                        Some(Flash::Ok(m)) => { p.flash.ok role="status" { (m) } }
                        None => {}
                    }
                    (content)
                }
                footer { "rpibroker: small computers, rented by the hour." }
                script src=(super::LIVE_JS_PATH) defer {}
            }
        }
    }
}
