//! Objects a provider keeps for its account (responses, conversations, files, vector stores,
//! batches, …) and which agent each belongs to.
//!
//! Every agent behind Warden shares the provider key, so the provider cannot tell one agent's
//! objects from another's: whoever knows an id may read, continue or delete it. Warden can. It
//! records the id of every object a provider answers a creating request with, against the
//! agent that sent it ([`owners`]), and refuses a request that names an object — in its path
//! ([`ObjectPath`]) or its body ([`scan`]) — that the agent does not own.

pub mod owners;
pub mod scan;

use std::borrow::Cow;

pub use owners::{Owner, Owners};

/// What kind of object an id names (for messages; ownership is by id alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Response,
    ChatCompletion,
    Conversation,
    File,
    VectorStore,
    Batch,
    Upload,
    FineTuningJob,
    Assistant,
    Thread,
    Container,
    Eval,
    Video,
    MessageBatch,
}

impl Kind {
    /// The object as the provider's API reference names it.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Response => "response",
            Kind::ChatCompletion => "stored chat completion",
            Kind::Conversation => "conversation",
            Kind::File => "file",
            Kind::VectorStore => "vector store",
            Kind::Batch => "batch",
            Kind::Upload => "upload",
            Kind::FineTuningJob => "fine-tuning job",
            Kind::Assistant => "assistant",
            Kind::Thread => "thread",
            Kind::Container => "container",
            Kind::Eval => "eval",
            Kind::Video => "video",
            Kind::MessageBatch => "message batch",
        }
    }
}

/// An object a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef<'a> {
    pub kind: Kind,
    pub id: Cow<'a, str>,
}

/// A collection of objects on the provider's API: `POST path` creates one, `path/{id}…`
/// addresses one.
struct Collection {
    path: &'static str,
    kind: Kind,
    /// Segments after `path` that are operations on the collection, not object ids.
    operations: &'static [&'static str],
}

/// The collections Warden knows, longest path first where one is a prefix of another.
const COLLECTIONS: &[Collection] = &[
    Collection {
        path: "/v1/responses",
        kind: Kind::Response,
        operations: &["input_tokens", "compact"],
    },
    Collection {
        path: "/v1/chat/completions",
        kind: Kind::ChatCompletion,
        operations: &[],
    },
    Collection {
        path: "/v1/conversations",
        kind: Kind::Conversation,
        operations: &[],
    },
    Collection {
        path: "/v1/files",
        kind: Kind::File,
        operations: &[],
    },
    Collection {
        path: "/v1/vector_stores",
        kind: Kind::VectorStore,
        operations: &[],
    },
    Collection {
        path: "/v1/batches",
        kind: Kind::Batch,
        operations: &[],
    },
    Collection {
        path: "/v1/uploads",
        kind: Kind::Upload,
        operations: &[],
    },
    Collection {
        path: "/v1/fine_tuning/jobs",
        kind: Kind::FineTuningJob,
        operations: &[],
    },
    Collection {
        path: "/v1/assistants",
        kind: Kind::Assistant,
        operations: &[],
    },
    Collection {
        path: "/v1/threads",
        kind: Kind::Thread,
        operations: &["runs"],
    },
    Collection {
        path: "/v1/containers",
        kind: Kind::Container,
        operations: &[],
    },
    Collection {
        path: "/v1/evals",
        kind: Kind::Eval,
        operations: &[],
    },
    Collection {
        path: "/v1/videos",
        kind: Kind::Video,
        operations: &[],
    },
    Collection {
        path: "/v1/messages/batches",
        kind: Kind::MessageBatch,
        operations: &[],
    },
];

/// What a request path says about provider objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPath<'a> {
    pub kind: Kind,
    /// The object the path addresses (`/v1/files/{id}/content`); `None` for the collection
    /// itself or one of its operations.
    pub object: Option<ObjectRef<'a>>,
    /// The path is the collection itself: a `POST` there creates an object.
    pub is_collection: bool,
}

impl<'a> ObjectPath<'a> {
    /// The collection `path` (a plain agent path, `/v1/…`) is in, if any.
    pub fn of(path: &'a str) -> Option<ObjectPath<'a>> {
        COLLECTIONS.iter().find_map(|c| {
            let rest = path.strip_prefix(c.path)?;
            if rest.is_empty() {
                return Some(ObjectPath {
                    kind: c.kind,
                    object: None,
                    is_collection: true,
                });
            }
            let rest = rest.strip_prefix('/')?;
            let id = rest.split('/').next().unwrap_or(rest);
            let object = (!c.operations.contains(&id)).then_some(ObjectRef {
                kind: c.kind,
                id: Cow::Borrowed(id),
            });
            Some(ObjectPath {
                kind: c.kind,
                object,
                is_collection: false,
            })
        })
    }

    /// The same, owning its id (held across the body read).
    pub fn into_owned(self) -> ObjectPath<'static> {
        ObjectPath {
            kind: self.kind,
            object: self.object.map(|o| ObjectRef {
                kind: o.kind,
                id: Cow::Owned(o.id.into_owned()),
            }),
            is_collection: self.is_collection,
        }
    }

    /// Whether a request on this path must name a model to be routed: creating a response, a
    /// chat completion or a fine-tuning job does, and so do a collection's operations
    /// (`/v1/responses/input_tokens`); a call on an object, or creating a file or a
    /// conversation, does not.
    pub fn needs_model(&self, method: &http::Method) -> bool {
        let creates_by_model = matches!(
            self.kind,
            Kind::Response | Kind::ChatCompletion | Kind::FineTuningJob
        );
        (self.is_collection && method == http::Method::POST && creates_by_model)
            || (!self.is_collection && self.object.is_none())
    }

    /// Whether a successful `POST` to this path answers with a new object the agent owns.
    /// Chat completions are objects only when stored (`store: true`).
    pub fn creates(&self, method: &http::Method, stored: bool) -> bool {
        self.is_collection
            && method == http::Method::POST
            && (self.kind != Kind::ChatCompletion || stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(path: &str) -> Option<(Kind, String)> {
        ObjectPath::of(path)?
            .object
            .map(|o| (o.kind, o.id.into_owned()))
    }

    #[test]
    fn paths_name_their_object() {
        assert_eq!(
            object("/v1/responses/resp_1/input_items"),
            Some((Kind::Response, "resp_1".into()))
        );
        assert_eq!(
            object("/v1/files/file-9/content"),
            Some((Kind::File, "file-9".into()))
        );
        assert_eq!(
            object("/v1/messages/batches/msgbatch_1"),
            Some((Kind::MessageBatch, "msgbatch_1".into()))
        );
        assert_eq!(
            object("/v1/conversations/conv_1/items/msg_2"),
            Some((Kind::Conversation, "conv_1".into()))
        );
        assert_eq!(object("/v1/responses/input_tokens"), None);
        assert_eq!(object("/v1/threads/runs"), None);
        assert_eq!(object("/v1/messages"), None);
        assert_eq!(object("/v1/responsesx/1"), None);
        assert!(ObjectPath::of("/v1/messages").is_none());
        assert!(ObjectPath::of("/v1/models/gpt-4o").is_none());
    }

    #[test]
    fn creating_by_model_and_collection_operations_need_a_model() {
        let (post, get) = (http::Method::POST, http::Method::GET);
        let needs =
            |path: &str, method: &http::Method| ObjectPath::of(path).unwrap().needs_model(method);
        assert!(needs("/v1/chat/completions", &post));
        assert!(needs("/v1/responses", &post));
        assert!(needs("/v1/responses/input_tokens", &post));
        assert!(!needs("/v1/chat/completions", &get));
        assert!(!needs("/v1/responses/resp_1", &get));
        assert!(!needs("/v1/files", &post));
        assert!(!needs("/v1/conversations", &post));
    }

    #[test]
    fn only_a_post_to_a_collection_creates() {
        let post = http::Method::POST;
        let files = ObjectPath::of("/v1/files").unwrap();
        assert!(files.creates(&post, false));
        assert!(!files.creates(&http::Method::GET, false));
        let chat = ObjectPath::of("/v1/chat/completions").unwrap();
        assert!(!chat.creates(&post, false));
        assert!(chat.creates(&post, true));
        let cancel = ObjectPath::of("/v1/responses/resp_1/cancel").unwrap();
        assert!(!cancel.creates(&post, false));
    }
}
