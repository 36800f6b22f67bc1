//! The dependency aggregate: one edge "source depends on target". Its id
//! derives from the pair ([`sentryops_events::cmdb::dependency_id_for`]), so
//! two concurrent additions of one edge meet on one stream and one of them
//! is refused.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use sentryops_events::cmdb::{dependency_id_for, DependencyEvent, DEPENDENCY};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Commands on an edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DependencyCommand {
    /// Adds the edge; the caller has checked that both assets exist and
    /// differ.
    Add {
        source_asset_id: Uuid,
        target_asset_id: Uuid,
        kind: Option<String>,
    },
    Remove,
}

/// Why an edge command was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DependencyError {
    #[error("this dependency already exists")]
    Exists,
    #[error("dependency")]
    NotFound,
}

/// Whether the edge exists now.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    live: bool,
}

impl Aggregate for Dependency {
    const TYPE: &'static str = DEPENDENCY;
    type Command = DependencyCommand;
    type Event = DependencyEvent;
    type Error = DependencyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            DependencyCommand::Add {
                source_asset_id,
                target_asset_id,
                kind,
            } => {
                if self.live {
                    return Err(DependencyError::Exists);
                }
                sink.write(
                    DependencyEvent::DependencyAdded {
                        dependency_id: dependency_id_for(source_asset_id, target_asset_id),
                        source_asset_id,
                        target_asset_id,
                        kind,
                    },
                    self,
                )
                .await;
                Ok(())
            }
            DependencyCommand::Remove => {
                if !self.live {
                    return Err(DependencyError::NotFound);
                }
                sink.write(DependencyEvent::DependencyRemoved, self).await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        self.live = matches!(event, DependencyEvent::DependencyAdded { .. });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    #[test]
    fn given_an_edge_when_added_again_then_refused_and_removal_is_once() {
        let (source, target) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let added = DependencyEvent::DependencyAdded {
            dependency_id: dependency_id_for(source, target),
            source_asset_id: source,
            target_asset_id: target,
            kind: None,
        };
        TestFramework::<Dependency>::with(())
            .given(vec![added.clone()])
            .when(DependencyCommand::Add {
                source_asset_id: source,
                target_asset_id: target,
                kind: Some("runs_on".into()),
            })
            .then_expect_error(DependencyError::Exists);
        TestFramework::<Dependency>::with(())
            .given(vec![added, DependencyEvent::DependencyRemoved])
            .when(DependencyCommand::Remove)
            .then_expect_error(DependencyError::NotFound);
    }
}
