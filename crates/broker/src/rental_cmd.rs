//! The `rpibroker rental …` commands: they ask the running broker, which
//! talks to the device over its live session.

use anyhow::Context;
use rpibroker_wire::control::check_public_key;

use crate::cli::RentalCommand;
use crate::notify::{self, LocalRequest};
use crate::settings::Settings;

pub async fn run(settings: &Settings, command: RentalCommand) -> anyhow::Result<()> {
    match command {
        RentalCommand::Start {
            device,
            ssh_key,
            json,
        } => {
            let mut ssh_keys = Vec::new();
            for path in &ssh_key {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading SSH public key {}", path.display()))?;
                let key = text.trim().to_string();
                check_public_key(&key).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                ssh_keys.push(key);
            }
            eprintln!("Provisioning the sandbox of {device} …");
            let answer = notify::request(
                &settings.data_dir,
                &LocalRequest::RentalStart {
                    device: device.clone(),
                    ssh_keys,
                },
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(());
            }
            let text = |k: &str| {
                answer
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("-")
                    .to_string()
            };
            let port = answer.get("ssh_port").and_then(|v| v.as_u64());
            println!("Rental {} of {device} is active.", text("rental"));
            println!();
            println!("  username  {}", text("username"));
            println!("  password  {}", text("password"));
            if let Some(port) = port {
                println!(
                    "  ssh       ssh -p {port} {}@{}",
                    text("username"),
                    text("ssh_host")
                );
            }
            println!("  http      {}", text("http_url"));
            println!("  https     {}", text("https_url"));
            println!();
            println!(
                "The password is shown only now. End the rental with `rpibroker rental stop {device}`."
            );
            Ok(())
        }
        RentalCommand::Stop { device } => {
            eprintln!("Ending the rental of {device}: wiping its sandbox …");
            let answer = notify::request(
                &settings.data_dir,
                &LocalRequest::RentalStop {
                    device: device.clone(),
                },
            )
            .await?;
            let rental = answer.get("rental").and_then(|v| v.as_str()).unwrap_or("-");
            println!(
                "Rental {rental} of {device} ended: the sandbox was wiped and a fresh one is ready."
            );
            Ok(())
        }
    }
}
