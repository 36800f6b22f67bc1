//! Every event type at every version, as stored: each fixture under
//! `tests/fixtures/<aggregate_type>/<EventType>.v<version>.json` holds a
//! stored payload and the current-shape payload it must decode to.
//!
//! Together with [`AnyEvent::variants_of`] (the variant names of every
//! event enum, derived, so a new variant is listed without anyone writing it
//! down) this proves: every variant has a current catalog row, every
//! catalog row (old versions included) has a fixture, every fixture
//! decodes through the one decoder (upcasters included) to exactly its
//! expected current value, and the current version writes what is stored.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use sentryops_events::catalog::{current_version, EVENT_CATALOG};
use sentryops_events::AnyEvent;
use serde_json::Value;

struct Fixture {
    path: PathBuf,
    aggregate_type: String,
    event_type: String,
    event_version: String,
    payload: Value,
    current: Value,
}

fn fixtures() -> Vec<Fixture> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut found = Vec::new();
    for aggregate in std::fs::read_dir(&root).expect("fixtures directory") {
        let aggregate = aggregate.expect("entry").path();
        for file in std::fs::read_dir(&aggregate).expect("aggregate directory") {
            let path = file.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("readable fixture");
            let json: Value = serde_json::from_str(&text).expect("fixture is JSON");
            let field = |name: &str| json[name].as_str().expect(name).to_string();
            let fixture = Fixture {
                aggregate_type: field("aggregate_type"),
                event_type: field("event_type"),
                event_version: field("event_version"),
                payload: json["payload"].clone(),
                current: json["current"].clone(),
                path: path.clone(),
            };
            let expected_name = format!("{}.v{}.json", fixture.event_type, fixture.event_version);
            assert_eq!(
                path.file_name().and_then(|name| name.to_str()),
                Some(expected_name.as_str()),
                "{path:?} is misnamed"
            );
            assert_eq!(
                aggregate.file_name().and_then(|name| name.to_str()),
                Some(fixture.aggregate_type.as_str()),
                "{path:?} is in the wrong directory"
            );
            found.push(fixture);
        }
    }
    found
}

#[test]
fn every_fixture_decodes_to_its_current_value() {
    for fixture in fixtures() {
        let event = AnyEvent::decode(
            &fixture.aggregate_type,
            &fixture.event_type,
            &fixture.event_version,
            &fixture.payload.to_string(),
        )
        .unwrap_or_else(|error| panic!("{:?}: {error}", fixture.path));
        assert_eq!(
            event.to_payload().expect("serializable"),
            fixture.current,
            "{:?} decodes to another value",
            fixture.path
        );
        let current =
            current_version(&fixture.aggregate_type, &fixture.event_type).expect("catalogued");
        assert_eq!(event.event_version(), current, "{:?}", fixture.path);
        assert_eq!(event.event_type(), fixture.event_type, "{:?}", fixture.path);
        if fixture.event_version == current {
            // What this build writes is what the fixture stores.
            assert_eq!(fixture.payload, fixture.current, "{:?}", fixture.path);
        } else {
            // The current shape, stored at the current version, reads alike.
            let again = AnyEvent::decode(
                &fixture.aggregate_type,
                &fixture.event_type,
                current,
                &fixture.current.to_string(),
            )
            .expect("the current shape decodes");
            assert_eq!(again, event, "{:?}", fixture.path);
        }
    }
}

#[test]
fn the_catalog_the_fixtures_and_the_event_enums_agree() {
    let catalogued: BTreeSet<(String, String, String)> = EVENT_CATALOG
        .iter()
        .map(|(a, t, v)| (a.to_string(), t.to_string(), v.to_string()))
        .collect();
    assert_eq!(catalogued.len(), EVENT_CATALOG.len(), "a catalog row twice");
    let fixtures: BTreeSet<(String, String, String)> = fixtures()
        .into_iter()
        .map(|f| (f.aggregate_type, f.event_type, f.event_version))
        .collect();
    assert_eq!(
        catalogued.difference(&fixtures).collect::<Vec<_>>(),
        Vec::<&(String, String, String)>::new(),
        "catalog rows without a fixture"
    );
    assert_eq!(
        fixtures.difference(&catalogued).collect::<Vec<_>>(),
        Vec::<&(String, String, String)>::new(),
        "fixtures without a catalog row"
    );
    let mut variants = BTreeSet::new();
    for aggregate in AnyEvent::AGGREGATE_TYPES {
        for variant in AnyEvent::variants_of(aggregate).expect("known") {
            assert!(
                current_version(aggregate, variant).is_some(),
                "{aggregate} {variant} has no catalog row"
            );
            variants.insert((aggregate.to_string(), variant.to_string()));
        }
    }
    for (aggregate, event_type, _) in &catalogued {
        assert!(
            variants.contains(&(aggregate.clone(), event_type.clone())),
            "catalog row {aggregate} {event_type} is no variant"
        );
    }
}

#[test]
fn an_asset_update_with_a_value_of_the_wrong_type_fails_loudly() {
    for stored in [
        // 1.0: environment must be an environment.
        (
            r#"{"AssetUpdated":{"changes":{"environment":{"before":"prod","after":42}}}}"#,
            "1.0",
        ),
        // 1.0: a field no asset has.
        (
            r#"{"AssetUpdated":{"changes":{"colour":{"before":"red","after":"blue"}}}}"#,
            "1.0",
        ),
        // 2.0: an unknown key beside the change.
        (
            r#"{"AssetUpdated":{"changes":[{"field":"name","before":"a","after":"b","note":1}]}}"#,
            "2.0",
        ),
    ] {
        assert!(
            AnyEvent::decode("asset", "AssetUpdated", stored.1, stored.0).is_err(),
            "{stored:?} decoded"
        );
    }
}
