//! `sentryops audit keygen` and `sentryops audit verify` (ADR 0006): the
//! checkpoint key, and the verification of the log in the database or of
//! an export file offline.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{bail, Context};
use sentryops_projections::seal::checkpoint::{SealKey, SealVerifier};
use sentryops_projections::seal::verify::{verify_database, verify_export, VerifyReport};

use super::VerifyArgs;
use crate::config::Config;
use crate::startup;

/// Writes a new key to `out` (0600) and its verifier key to `out.pub`.
pub fn keygen(name: &str, out: &Path) -> anyhow::Result<()> {
    let public = out.with_extension(match out.extension() {
        Some(extension) => format!("{}.pub", extension.to_string_lossy()),
        None => "pub".to_string(),
    });
    for path in [out, public.as_path()] {
        if path.exists() {
            bail!("{} exists; refusing to overwrite a key", path.display());
        }
    }
    let (private, key) = SealKey::generate(name)?;
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        file.mode(0o600);
    }
    file.open(out)
        .and_then(|mut file| writeln!(file, "{private}"))
        .with_context(|| format!("cannot write {}", out.display()))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&public)
        .and_then(|mut file| writeln!(file, "{}", key.verifier_key()))
        .with_context(|| format!("cannot write {}", public.display()))?;
    eprintln!(
        "signing key written to {} (set SENTRYOPS_SEAL_KEY_FILE to it); \
         publish {}",
        out.display(),
        public.display()
    );
    println!("{}", key.verifier_key());
    Ok(())
}

/// Verifies and prints the report; an error (non-zero exit) when the log
/// does not verify.
pub async fn verify(config: &Config, args: VerifyArgs) -> anyhow::Result<()> {
    let key = match (&args.key, &config.seal_key_file) {
        (Some(path), _) => Some(SealVerifier::load(path)?),
        (None, Some(path)) => Some(SealKey::load(path)?.verifier()),
        (None, None) => None,
    };
    let published = args
        .checkpoint
        .iter()
        .map(|path| {
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the checkpoint {}", path.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let report = match &args.file {
        Some(file) => {
            let input: Box<dyn BufRead> = if file.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(file)
                        .with_context(|| format!("cannot open {}", file.display()))?,
                ))
            };
            verify_export(input, key, &published)?
        }
        None => {
            let pool = startup::connect(config).await?;
            let mut conn = pool.acquire().await?;
            verify_database(&mut conn, key, args.from_checkpoint, &published).await?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    if !report.ok {
        bail!("the event log does not verify");
    }
    Ok(())
}

fn print_report(report: &VerifyReport) {
    println!(
        "events checked: {} ({} sealed, {} not yet sealed)",
        report.events_checked, report.sealed_events, report.unsealed_events
    );
    println!("head: tree size {} hash {}", report.tree_size, report.head);
    match &report.key {
        Some(key) => println!(
            "checkpoints: {} checked, {} valid (key {key})",
            report.checkpoints_checked, report.checkpoints_valid
        ),
        None => println!("checkpoints: not checked (no key: --key or SENTRYOPS_SEAL_KEY_FILE)"),
    }
    if let Some(from) = &report.verified_from {
        println!(
            "verified from the checkpoint at tree size {}",
            from.tree_size
        );
    }
    match &report.last_good_checkpoint {
        Some(good) => println!(
            "last good checkpoint: tree size {} (position {}, signed {})",
            good.tree_size, good.last_position, good.signed_at
        ),
        None => println!("last good checkpoint: none"),
    }
    if let Some(bad) = &report.first_bad_event {
        println!(
            "FIRST BAD EVENT: {:?} at chain index {}{}: {}",
            bad.problem,
            bad.chain_index,
            bad.position
                .map(|position| format!(", position {position}"))
                .unwrap_or_default(),
            bad.detail
        );
    }
    if let Some(bad) = &report.first_bad_checkpoint {
        println!(
            "BAD CHECKPOINT: {:?}{}: {}",
            bad.problem,
            bad.tree_size
                .map(|size| format!(" at tree size {size}"))
                .unwrap_or_default(),
            bad.detail
        );
    }
    println!("{}", if report.ok { "OK" } else { "FAILED" });
}
