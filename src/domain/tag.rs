//! The tag aggregate: a name, unique case-insensitively, and a color. The
//! aggregate id derives from the normalized name
//! ([`sentryops_events::cmdb::tag_id_for`]), so two concurrent creations of
//! one name meet on one stream and one of them is refused.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use sentryops_events::cmdb::{tag_id_for, TagEvent, TAG};
use serde::{Deserialize, Serialize};

/// Commands on a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagCommand {
    /// Creates the tag (validated name and color).
    Create {
        name: String,
        color: String,
    },
    Delete,
}

/// Why a tag command was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("a tag with this name already exists")]
    NameTaken,
    #[error("tag")]
    NotFound,
}

/// Whether the tag exists now.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    live: bool,
}

impl Aggregate for Tag {
    const TYPE: &'static str = TAG;
    type Command = TagCommand;
    type Event = TagEvent;
    type Error = TagError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            TagCommand::Create { name, color } => {
                if self.live {
                    return Err(TagError::NameTaken);
                }
                let tag_id = tag_id_for(&name);
                sink.write(
                    TagEvent::TagCreated {
                        tag_id,
                        name,
                        color,
                    },
                    self,
                )
                .await;
                Ok(())
            }
            TagCommand::Delete => {
                if !self.live {
                    return Err(TagError::NotFound);
                }
                sink.write(TagEvent::TagDeleted, self).await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        self.live = matches!(event, TagEvent::TagCreated { .. });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn created() -> TagEvent {
        TagEvent::TagCreated {
            tag_id: tag_id_for("prod"),
            name: "prod".into(),
            color: "#64748b".into(),
        }
    }

    #[test]
    fn given_a_tag_when_created_again_then_the_name_is_taken() {
        TestFramework::<Tag>::with(())
            .given(vec![created()])
            .when(TagCommand::Create {
                name: "PROD".into(),
                color: "#000000".into(),
            })
            .then_expect_error(TagError::NameTaken);
    }

    #[test]
    fn given_a_deleted_tag_when_created_again_then_it_lives_again() {
        TestFramework::<Tag>::with(())
            .given(vec![created(), TagEvent::TagDeleted])
            .when(TagCommand::Create {
                name: "prod".into(),
                color: "#64748b".into(),
            })
            .then_expect_events(vec![created()]);
        TestFramework::<Tag>::with(())
            .given(vec![created(), TagEvent::TagDeleted])
            .when(TagCommand::Delete)
            .then_expect_error(TagError::NotFound);
    }
}
