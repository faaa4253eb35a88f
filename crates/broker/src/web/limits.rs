//! The owner's sandbox limits on My devices: a small form per device,
//! prefilled with the limits in force, posting to `/devices/limits`, which
//! runs [`crate::sandbox_limits::configure`] for the signed-in owner.

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use rpibroker_wire::control::SandboxLimits;
use rpibroker_wire::limits::{LimitSettings, MIN_MEMORY_MB, show_cpus};
use rpibroker_wire::{Cpus, DeviceName, DeviceStatus};
use serde::Deserialize;

use super::devices::devices_reply;
use super::layout::Flash;
use super::signed_in_form;
use crate::broker::Shared;
use crate::sandbox_limits::{self, LimitsError};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

#[derive(Deserialize)]
pub struct LimitsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    cpus: String,
    #[serde(default)]
    memory_mb: String,
    #[serde(default)]
    disk_gb: String,
}

/// The limits the device's sandbox runs under: as its agent last reported
/// the sandbox, else as its handshake claimed them.
fn in_force(d: &DeviceStatus) -> Option<SandboxLimits> {
    d.sandbox
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .map(|s| s.limits.clone())
        .or_else(|| d.hardware.as_ref().and_then(|h| h.sandbox.clone()))
}

/// The form for one device; nothing for a device that has never reported a
/// sandbox.
pub fn form(csrf: &str, d: &DeviceStatus) -> Markup {
    let Some(limits) = in_force(d) else {
        return html! {};
    };
    let cpus = limits
        .cpu_millicores
        .map(|m| show_cpus(Cpus::from_millicores(m)))
        .unwrap_or_default();
    let memory = limits
        .memory_bytes
        .map(|b| (b / MIB).to_string())
        .unwrap_or_default();
    let disk = limits
        .disk_bytes
        .map(|b| (b / GIB).to_string())
        .unwrap_or_default();
    html! {
        form.inline method="post" action="/devices/limits" data-testid={ "limits-" (d.name) } {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="name" value=(d.name);
            label.inline { "CPU cores "
                input type="text" name="cpus" inputmode="decimal" size="5" required value=(cpus)
                    aria-label={ "CPU cores of the sandbox of " (d.name) };
            }
            label.inline { "memory MiB "
                input type="number" name="memory_mb" min=(MIN_MEMORY_MB) size="6" required value=(memory)
                    aria-label={ "memory in MiB of the sandbox of " (d.name) };
            }
            label.inline { "disk GiB "
                input type="number" name="disk_gb" min="1" size="5" value=(disk) placeholder="no limit"
                    aria-label={ "disk in GiB of the sandbox of " (d.name) };
            }
            button type="submit" { "Set limits" }
        }
    }
}

/// Sets the sandbox limits of one of the signed-in owner's devices.
pub async fn set_limits(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<LimitsForm>,
) -> Response {
    let (session, _) = match signed_in_form(&shared, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let show = |status, flash| devices_reply(&shared, &session, status, flash);
    let Ok(name) = DeviceName::parse(&form.name) else {
        return show(
            StatusCode::NOT_FOUND,
            Flash::Error("You have no device by that name.".into()),
        )
        .await;
    };
    let set = match LimitSettings::parse(&form.cpus, &form.memory_mb, &form.disk_gb) {
        Ok(s) => s,
        Err(e) => {
            return show(
                StatusCode::UNPROCESSABLE_ENTITY,
                Flash::Error(format!("{name}: {e}.")),
            )
            .await;
        }
    };
    match sandbox_limits::configure(&shared, &name, Some(session.user.id), set).await {
        Ok(_) => {
            let disk = set
                .disk_gb()
                .map_or("no disk limit".to_string(), |g| format!("{g} GiB disk"));
            show(
                StatusCode::OK,
                Flash::Ok(format!(
                    "{name}: the sandbox now has {} CPU cores, {} MiB memory, {disk}. The broker is measuring it again.",
                    show_cpus(set.cpus()),
                    set.memory_mb()
                )),
            )
            .await
        }
        Err(LimitsError::NoSuchDevice(_)) => {
            show(
                StatusCode::NOT_FOUND,
                Flash::Error("You have no device by that name.".into()),
            )
            .await
        }
        Err(e @ LimitsError::OutOfRange { .. }) => {
            show(
                StatusCode::UNPROCESSABLE_ENTITY,
                Flash::Error(format!("{e}.")),
            )
            .await
        }
        Err(
            e @ (LimitsError::Offline(_)
            | LimitsError::Rented(_)
            | LimitsError::Ending(_)
            | LimitsError::NoSandbox(_)),
        ) => show(StatusCode::CONFLICT, Flash::Error(format!("{e}."))).await,
        Err(e @ LimitsError::Device(..)) => {
            tracing::warn!(device = %name, error = %e, "changing sandbox limits failed");
            show(
                StatusCode::BAD_GATEWAY,
                Flash::Error(format!("The limits could not be applied: {e}")),
            )
            .await
        }
        Err(LimitsError::Store(e)) => {
            tracing::error!(device = %name, error = %e, "changing sandbox limits failed");
            show(
                StatusCode::INTERNAL_SERVER_ERROR,
                Flash::Error("The broker could not save that; try again later.".into()),
            )
            .await
        }
    }
}
