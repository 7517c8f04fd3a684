//! fritz2's `Resource`: how to find an entity's id, how to (de)serialise it, and what an empty (or
//! deleted) entity is.

use std::fmt::Display;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Turns entities into the JSON values the protocol carries, and back.
pub trait Serializer<T>: Send + Sync + 'static {
    /// The entity as JSON.
    fn write(&self, entity: &T) -> Result<Value, String>;
    /// An entity from JSON.
    fn read(&self, value: Value) -> Result<T, String>;
}

/// The default serializer: serde JSON.
#[derive(Clone, Copy, Debug, Default)]
pub struct Json;

impl<T: Serialize + DeserializeOwned + 'static> Serializer<T> for Json {
    fn write(&self, entity: &T) -> Result<Value, String> {
        serde_json::to_value(entity).map_err(|e| e.to_string())
    }

    fn read(&self, value: Value) -> Result<T, String> {
        serde_json::from_value(value).map_err(|e| e.to_string())
    }
}

/// How entities of one type are identified and serialised (fritz2's `Resource(idProvider,
/// serializer, emptyEntity)`). Cheap to clone.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use switchboard::sync::{Json, Resource};
///
/// #[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
/// struct Person { name: String, age: u32, _id: String }
///
/// let people = Resource::new(|p: &Person| p._id.clone(), Json, Person::default());
/// ```
pub struct Resource<T, I = String> {
    id_provider: Arc<dyn Fn(&T) -> I + Send + Sync>,
    serializer: Arc<dyn Serializer<T>>,
    empty: T,
}

impl<T: Clone, I> Clone for Resource<T, I> {
    fn clone(&self) -> Self {
        Self { id_provider: self.id_provider.clone(), serializer: self.serializer.clone(), empty: self.empty.clone() }
    }
}

impl<T: Clone + Send + Sync + 'static, I: Display + 'static> Resource<T, I> {
    /// A resource from an id provider, a serializer ([`Json`]) and the empty entity.
    pub fn new(
        id_provider: impl Fn(&T) -> I + Send + Sync + 'static,
        serializer: impl Serializer<T>,
        empty: T,
    ) -> Self {
        Self { id_provider: Arc::new(id_provider), serializer: Arc::new(serializer), empty }
    }

    /// The empty entity: a new store's value, and what a deleted entity becomes.
    pub fn empty(&self) -> T {
        self.empty.clone()
    }

    /// The entity's id as the protocol carries it.
    pub fn id_of(&self, entity: &T) -> String {
        (self.id_provider)(entity).to_string()
    }

    /// The entity as JSON.
    pub fn write(&self, entity: &T) -> Result<Value, String> {
        self.serializer.write(entity)
    }

    /// An entity from JSON.
    pub fn read(&self, value: Value) -> Result<T, String> {
        self.serializer.read(value)
    }
}
