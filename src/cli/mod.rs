//! The `sentryops` command line (clap): serve, migrate, users,
//! projections, event export, audit (keys and verification) and replay.

mod audit;
mod export;
mod replay;

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use sentryops_events::{EventMetadata, Role};
use sentryops_projections::rebuild::{rebuild_now, RebuildOutcome};
use sentryops_projections::RuntimeOptions;

use crate::config::{Config, Secret};
use crate::domain::user::{Email, FullName};
use crate::domain::Commands;
use crate::startup::{self, Application};

/// SentryOps: IT operations command center.
#[derive(Debug, Parser)]
#[command(name = "sentryops", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Migrate, start the projections and serve the API.
    Serve {
        /// Load the demo data (idempotent) before serving.
        #[arg(long)]
        demo: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Inspect and rebuild projections.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Read the event log.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Manage the access-token key file (SENTRYOPS_TOKEN_KEYS_FILE).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Tamper evidence: the checkpoint key and verification (ADR 0006).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print an aggregate's state after each event of its stream.
    Replay {
        #[arg(value_enum)]
        kind: replay::ReplayKind,
        /// The aggregate id.
        id: String,
        /// Only events recorded at or before this time (RFC 3339).
        #[arg(long, value_parser = parse_time, conflicts_with = "until_position")]
        until: Option<time::OffsetDateTime>,
        /// Only events at or before this global position.
        #[arg(long)]
        until_position: Option<i64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn parse_time(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| "an RFC 3339 time, e.g. 2026-12-03T18:00:00Z".to_string())
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Create the checkpoint signing key: FILE (private, mode 0600) and
    /// FILE.pub (the verifier key to publish). Refuses to overwrite.
    Keygen {
        /// The log's name: the origin line of every checkpoint
        /// (e.g. sentryops.example.com/log).
        #[arg(long)]
        name: String,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Recompute the hash chain and check every checkpoint signature;
    /// exits non-zero at the first altered, missing, inserted or reordered
    /// event or bad checkpoint.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// Start at the newest checkpoint that verifies (database only).
    #[arg(long, conflicts_with = "file")]
    from_checkpoint: bool,
    /// Verify an `events export` NDJSON file offline instead of the
    /// database (`-` for standard input).
    #[arg(long, requires = "key")]
    file: Option<std::path::PathBuf>,
    /// The verifier key file (`.pub`); defaults to the public half of
    /// SENTRYOPS_SEAL_KEY_FILE.
    #[arg(long)]
    key: Option<std::path::PathBuf>,
    /// A checkpoint published outside the database (repeatable): the log
    /// must still reach it, so a cut tail shows.
    #[arg(long)]
    checkpoint: Vec<std::path::PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create the key file with one signing key (refuses to overwrite).
    Init,
    /// Add a new signing key; the previous one verifies until the longest
    /// access-token lifetime has passed, then it is dropped.
    Rotate,
    /// List the keys: id, status, and when a retiring key stops verifying.
    List,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Create a user. The password is read from SENTRYOPS_NEW_USER_PASSWORD
    /// or, if unset, from the first line of standard input (never argv).
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        full_name: String,
        #[arg(long, default_value = "viewer")]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// Name, version, checkpoint and lag of every projection.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild into shadow tables and swap them in atomically.
    Rebuild(RebuildArgs),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct RebuildArgs {
    /// The projection to rebuild.
    name: Option<String>,
    /// Rebuild every projection.
    #[arg(long)]
    all: bool,
}

/// Output format of `events export`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Ndjson,
    Csv,
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Write the event log in global order to stdout (progress on stderr).
    Export {
        /// Start after this global position.
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, value_enum, default_value = "ndjson")]
        format: ExportFormat,
    },
}

/// Runs the command line.
pub async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_env()?;
    // Tools print their own progress; only the server logs at info.
    let default_level = match cli.command {
        Command::Serve { .. } => "info",
        _ => "warn",
    };
    let _telemetry = crate::telemetry::init(&config, default_level)?;
    match cli.command {
        Command::Serve { demo } => serve(config, demo).await,
        Command::Migrate => {
            let pool = startup::connect(&config).await?;
            startup::migrate(&pool).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Users(UsersCommand::Create {
            email,
            full_name,
            role,
        }) => create_user(config, &email, &full_name, &role).await,
        Command::Projections(ProjectionsCommand::Status { json }) => {
            projection_status(config, json).await
        }
        Command::Projections(ProjectionsCommand::Rebuild(args)) => rebuild(config, args).await,
        Command::Keys(command) => keys(&config, command),
        Command::Audit(AuditCommand::Keygen { name, out }) => audit::keygen(&name, &out),
        Command::Audit(AuditCommand::Verify(args)) => audit::verify(&config, args).await,
        Command::Replay {
            kind,
            id,
            until,
            until_position,
            json,
        } => {
            let pool = startup::connect(&config).await?;
            let range = sentryops_projections::store::StreamRange {
                until_time: until,
                until_position,
            };
            replay::replay(&pool, kind, &id, range, json).await
        }
        Command::Events(EventsCommand::Export { after, format }) => {
            let pool = startup::connect(&config).await?;
            export::export(&pool, after, format).await
        }
    }
}

async fn serve(config: Config, demo: bool) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    if demo {
        crate::demo::load(app.state()).await?;
    }
    let address = app.local_addr();
    tracing::info!(%address, "SentryOps listening");
    eprintln!("SentryOps is up at http://{address}");
    app.run_until(startup::shutdown_signal()).await
}

fn read_new_password() -> anyhow::Result<Secret> {
    // An empty value (as in a .env copied from .env.example) means unset.
    if let Some(password) = std::env::var("SENTRYOPS_NEW_USER_PASSWORD")
        .ok()
        .filter(|password| !password.is_empty())
    {
        return Ok(Secret::new(password));
    }
    if std::io::stdin().is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(Secret::new(line.trim_end_matches(['\r', '\n'])))
}

async fn create_user(
    config: Config,
    email: &str,
    full_name: &str,
    role: &str,
) -> anyhow::Result<()> {
    let email = Email::parse(email).map_err(|reason| anyhow::anyhow!("--email {reason}"))?;
    let full_name =
        FullName::parse(full_name).map_err(|reason| anyhow::anyhow!("--full-name {reason}"))?;
    let role =
        Role::parse(role).context("--role must be one of viewer, operator, admin, auditor")?;
    let password = read_new_password()?;
    if !(8..=1024).contains(&password.expose().chars().count()) {
        bail!("the password must be 8 to 1024 characters");
    }
    let pool = startup::connect(&config).await?;
    startup::migrate(&pool).await?;
    let hash = crate::password::Passwords::new(config.password_hashing)?
        .hash(&password)
        .await?;
    let user_id = email.user_id();
    let commands = Commands::new(pool);
    let result = commands
        .user(
            user_id,
            crate::domain::user::UserCommand::RegisterUser {
                email,
                full_name,
                role,
                password_hash: hash,
                mfa_enabled: false,
            },
            EventMetadata::system(),
        )
        .await;
    match result {
        Ok(_) => {
            println!("{user_id}");
            Ok(())
        }
        Err(cqrs_es::AggregateError::UserError(error)) => bail!("{error}"),
        Err(error) => Err(anyhow::anyhow!("could not create the user: {error}")),
    }
}

async fn projection_status(config: Config, json: bool) -> anyhow::Result<()> {
    let pool = startup::connect(&config).await?;
    let projections = sentryops_projections::all(startup::sealer(&config)?);
    let (statuses, oldest) = sentryops_projections::status::status(&pool, &projections).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "projections": statuses,
                "oldest_open_append": oldest,
                "oldest_open_transaction": oldest,
            }))?
        );
        return Ok(());
    }
    println!(
        "{:<16} {:>7} {:>7} {:>22} {:>10} {:>9}  STATUS",
        "NAME", "CODE_V", "DB_V", "CHECKPOINT (tx/pos)", "LAG", "LAG_S"
    );
    for status in statuses {
        println!(
            "{:<16} {:>7} {:>7} {:>22} {:>10} {:>9.3}  {}{}",
            status.name,
            status.code_version,
            status
                .stored_version
                .map_or_else(|| "-".to_string(), |v| v.to_string()),
            format!(
                "{}/{}",
                status.checkpoint.transaction_id, status.checkpoint.position
            ),
            status.lag_events,
            status.lag_seconds,
            status.status,
            status
                .last_error
                .map(|error| format!(" ({error})"))
                .unwrap_or_default(),
        );
    }
    if let Some(oldest) = oldest {
        println!(
            "oldest open append: pid {} ({}), open {:.1}s{}",
            oldest.pid,
            oldest.state.unwrap_or_default(),
            oldest.age_seconds,
            oldest
                .application_name
                .filter(|name| !name.is_empty())
                .map(|name| format!(", application {name}"))
                .unwrap_or_default(),
        );
    }
    Ok(())
}

async fn rebuild(config: Config, args: RebuildArgs) -> anyhow::Result<()> {
    let pool = startup::connect(&config).await?;
    startup::migrate(&pool).await?;
    let all = sentryops_projections::all(startup::sealer(&config)?);
    let selected: Vec<_> = if args.all {
        all
    } else {
        let name = args.name.unwrap_or_default();
        let found: Vec<_> = all.into_iter().filter(|p| p.name() == name).collect();
        if found.is_empty() {
            let names: Vec<_> = sentryops_projections::all(startup::sealer(&config)?)
                .iter()
                .map(|p| p.name())
                .collect();
            bail!("no projection named {name:?}; known: {}", names.join(", "));
        }
        found
    };
    let options = RuntimeOptions::default();
    for projection in selected {
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template(
                "{prefix:>16} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(projection.name());
        let outcome = rebuild_now(&pool, projection.as_ref(), &options, &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
        .await?;
        bar.finish();
        match outcome {
            RebuildOutcome::Completed { events } => {
                eprintln!(
                    "{}: rebuilt from {events} events and swapped in",
                    projection.name()
                )
            }
            RebuildOutcome::Stopped { events } => {
                eprintln!("{}: stopped after {events} events", projection.name())
            }
        }
    }
    Ok(())
}

fn keys(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    use crate::auth::keyring::{create_key_file, rotate_key_file, Keyring};
    let path = config
        .token_keys_file
        .as_ref()
        .context("set SENTRYOPS_TOKEN_KEYS_FILE to the key file's path")?;
    match command {
        KeysCommand::Init => println!("{}", create_key_file(path)?),
        KeysCommand::Rotate => println!("{}", rotate_key_file(path, config.access_token_ttl)?),
        KeysCommand::List => {
            for key in Keyring::load(path, config.access_token_ttl)?.published() {
                println!(
                    "{}  {:?}{}",
                    key.kid,
                    key.status,
                    key.retires_at
                        .map(|at| format!("  verifies until {at}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
