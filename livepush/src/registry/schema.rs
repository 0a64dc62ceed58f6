//! Payload schemas of published types, captured by the macros for the AsyncAPI document.
//!
//! The macros cannot know whether a type implements `schemars::JsonSchema`, and must not require
//! it. Each registry entry holds a [`PayloadSchema`] function whose body asks
//! `let probe = &Probe::<T>::new(); probe.payload_schema(schemas)`: method resolution picks [`ViaJsonSchema`]
//! when `T: JsonSchema` (and the `schemars` feature is on), else [`NoSchema`] one auto-ref
//! further, which answers `None` (documented as `{}`). The choice is made at compile time, for
//! the concrete type the handler returns.

use std::marker::PhantomData;

use serde_json::{Map, Value};

/// Writes the schema of one published type into `schemas` and answers it (a `$ref` for named
/// types), or `None` when the type has no `JsonSchema` impl or the feature is off.
pub type PayloadSchema = fn(&mut Schemas) -> Option<Value>;

/// The schemas of one AsyncAPI document: named types land in `components.schemas`.
pub struct Schemas {
    #[cfg(feature = "schemars")]
    generator: schemars::SchemaGenerator,
}

/// Where named types are defined in the document, as a JSON pointer.
#[cfg(feature = "schemars")]
const DEFINITIONS: &str = "/components/schemas";

impl Schemas {
    pub(crate) fn new() -> Self {
        #[cfg(feature = "schemars")]
        {
            let mut settings = schemars::generate::SchemaSettings::draft07();
            settings.definitions_path = DEFINITIONS.into();
            Schemas {
                generator: settings.for_serialize().into_generator(),
            }
        }
        #[cfg(not(feature = "schemars"))]
        Schemas {}
    }

    /// The named types referenced so far, for `components.schemas`.
    pub(crate) fn into_definitions(self) -> Map<String, Value> {
        #[cfg(feature = "schemars")]
        {
            let mut generator = self.generator;
            generator.take_definitions(true)
        }
        #[cfg(not(feature = "schemars"))]
        Map::new()
    }
}

/// Stands for type `T` in the method-resolution choice described in the module docs.
#[doc(hidden)]
pub struct Probe<T: ?Sized>(PhantomData<fn() -> Box<T>>);

impl<T: ?Sized> Probe<T> {
    /// A probe of `T`.
    pub const fn new() -> Self {
        Probe(PhantomData)
    }
}

impl<T: ?Sized> Default for Probe<T> {
    fn default() -> Self {
        Probe::new()
    }
}

/// Stands for the type a `#[publish_event]` handler returns: its schema is that of
/// `<R as Publishable>::Data`.
#[doc(hidden)]
pub struct ReturnProbe<R: ?Sized>(PhantomData<fn() -> Box<R>>);

impl<R: ?Sized> ReturnProbe<R> {
    /// A probe of `R`.
    pub const fn new() -> Self {
        ReturnProbe(PhantomData)
    }
}

impl<R: ?Sized> Default for ReturnProbe<R> {
    fn default() -> Self {
        ReturnProbe::new()
    }
}

/// Chosen when `T: JsonSchema`.
#[doc(hidden)]
pub trait ViaJsonSchema {
    /// The schema of `T`.
    fn payload_schema(&self, schemas: &mut Schemas) -> Option<Value>;
}

#[cfg(feature = "schemars")]
impl<T: schemars::JsonSchema + ?Sized> ViaJsonSchema for Probe<T> {
    fn payload_schema(&self, schemas: &mut Schemas) -> Option<Value> {
        Some(schemas.generator.subschema_for::<T>().to_value())
    }
}

#[cfg(feature = "schemars")]
impl<R> ViaJsonSchema for ReturnProbe<R>
where
    R: crate::publishable::Publishable + ?Sized,
    R::Data: schemars::JsonSchema,
{
    fn payload_schema(&self, schemas: &mut Schemas) -> Option<Value> {
        Some(schemas.generator.subschema_for::<R::Data>().to_value())
    }
}

/// The fallback: no schema known.
#[doc(hidden)]
pub trait NoSchema {
    /// `None`.
    fn payload_schema(&self, _schemas: &mut Schemas) -> Option<Value> {
        None
    }
}

impl<T: ?Sized> NoSchema for &Probe<T> {}
impl<R: ?Sized> NoSchema for &ReturnProbe<R> {}

#[cfg(test)]
mod tests {
    #[allow(unused_imports)]
    use super::{NoSchema as _, Probe, Schemas, ViaJsonSchema as _};

    struct Opaque;

    #[test]
    fn a_type_without_json_schema_has_none() {
        let mut schemas = Schemas::new();
        let probe = &Probe::<Opaque>::new();
        assert_eq!(probe.payload_schema(&mut schemas), None);
    }

    #[cfg(feature = "schemars")]
    #[test]
    fn a_json_schema_type_is_referenced_and_defined() {
        #[derive(schemars::JsonSchema, serde::Serialize)]
        #[allow(dead_code)]
        struct Note {
            id: u64,
            text: Option<String>,
        }
        let mut schemas = Schemas::new();
        let probe = &Probe::<Note>::new();
        let schema = probe.payload_schema(&mut schemas);
        assert_eq!(
            schema,
            Some(serde_json::json!({"$ref": "#/components/schemas/Note"}))
        );
        let defs = schemas.into_definitions();
        assert_eq!(defs["Note"]["properties"]["id"]["type"], "integer");
    }
}
