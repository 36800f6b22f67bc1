//! The access-token key file: `sentryops keys init|rotate|list`, and a
//! running process picking up a rotation from the shared file.

use std::process::Command;
use std::time::Duration;

use sentryops::auth::keyring::rotate_key_file;
use sentryops::auth::SharedKeyring;
use sentryops_events::Role;
use time::OffsetDateTime;
use uuid::Uuid;

fn keys(file: &std::path::Path, subcommand: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sentryops"))
        .args(["keys", subcommand])
        .env_clear()
        .env("DATABASE_URL", "postgres://unused@127.0.0.1/unused")
        .env("SENTRYOPS_TOKEN_KEYS_FILE", file)
        .output()
        .expect("runs")
}

#[tokio::test]
async fn keys_rotate_through_the_cli_and_reach_a_running_process() {
    let directory = std::env::temp_dir().join(format!("sentryops-keys-test-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&directory).expect("dir");
    let file = directory.join("keys.json");

    let init = keys(&file, "init");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let first = String::from_utf8_lossy(&init.stdout).trim().to_string();
    assert!(first.starts_with("k4.pid."), "{first}");
    assert!(
        !keys(&file, "init").status.success(),
        "init never overwrites"
    );

    let ttl = Duration::from_secs(900);
    let shared = SharedKeyring::open(Some(&file), ttl).expect("opens");
    let watcher = shared.watch(file.clone(), ttl, Duration::from_millis(20));
    assert_eq!(shared.current().active_kid(), first);
    let (old_token, _) = shared
        .current()
        .issue_access(
            Uuid::new_v4(),
            Role::Viewer,
            Uuid::new_v4(),
            OffsetDateTime::now_utc(),
        )
        .expect("signed");

    let rotate = keys(&file, "rotate");
    assert!(
        rotate.status.success(),
        "{}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    let second = String::from_utf8_lossy(&rotate.stdout).trim().to_string();
    assert_ne!(second, first);
    let list = String::from_utf8_lossy(&keys(&file, "list").stdout).into_owned();
    assert!(list.contains(&first) && list.contains(&second), "{list}");
    assert!(
        list.contains("Retiring") && list.contains("Active"),
        "{list}"
    );
    assert!(!list.contains("k4.secret"), "{list}");

    let mut picked_up = false;
    for _ in 0..250 {
        if shared.current().active_kid() == second {
            picked_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(picked_up, "the running process reloads the rotated file");
    assert!(
        shared.current().verify_access(&old_token).is_ok(),
        "old tokens verify in the grace window"
    );

    // A broken file keeps the previous ring in force.
    std::fs::write(&file, "not json").expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(shared.current().active_kid(), second);
    assert!(
        rotate_key_file(&file, ttl).is_err(),
        "rotate refuses a broken file"
    );
    watcher.abort();
    std::fs::remove_dir_all(&directory).expect("cleanup");
}

#[test]
fn the_first_start_creates_the_key_file() {
    let directory = std::env::temp_dir().join(format!("sentryops-first-start-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&directory).expect("dir");
    let file = directory.join("keys.json");
    let shared = SharedKeyring::open(Some(&file), Duration::from_secs(900)).expect("opens");
    assert!(file.exists());
    let again = SharedKeyring::open(Some(&file), Duration::from_secs(900)).expect("reopens");
    assert_eq!(
        shared.current().active_kid(),
        again.current().active_kid(),
        "created once, then reused"
    );
    std::fs::remove_dir_all(&directory).expect("cleanup");
}

#[test]
fn audit_keygen_writes_a_private_key_and_its_verifier_key_once() {
    use sentryops_projections::seal::checkpoint::{SealKey, SealVerifier};
    let directory = std::env::temp_dir().join(format!("sentryops-seal-key-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&directory).expect("dir");
    let file = directory.join("seal.key");
    let keygen = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_sentryops"))
            .args(["audit", "keygen", "--name", name, "--out"])
            .arg(&file)
            .env_clear()
            .env("DATABASE_URL", "postgres://unused@127.0.0.1/unused")
            .output()
            .expect("runs")
    };
    assert!(!keygen("two words").status.success(), "a bad name");
    let created = keygen("sentryops.test/log");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let printed = String::from_utf8_lossy(&created.stdout).trim().to_string();
    let public = std::fs::read_to_string(directory.join("seal.key.pub")).expect("pub file");
    assert_eq!(public.trim(), printed, "stdout is the verifier key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the private key is the owner's only");
    }
    let key = SealKey::load(&file).expect("the key loads");
    let note = key
        .sign(
            1,
            &[1; 32],
            sentryops_projections::LogPosition::START,
            OffsetDateTime::now_utc(),
        )
        .expect("signed");
    SealVerifier::load(&directory.join("seal.key.pub"))
        .expect("the verifier key loads")
        .open(&note)
        .expect("and verifies the key's checkpoints");
    assert!(
        !keygen("sentryops.test/log").status.success(),
        "never overwrites a key"
    );
}
