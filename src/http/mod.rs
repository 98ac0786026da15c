//! The HTTP surface: `router(state)` nests the public, private and server groups, each with its
//! auth applied by `route_layer`, and wraps them in the global layers.

pub mod auth_layer;
pub mod dto;
pub mod extract;
pub mod openapi;
mod private;
mod public;
mod router;
mod server;

pub use router::router;

/// OpenAPI response shorthands shared by the handlers' `#[utoipa::path]` attributes.
pub(crate) mod docs {
    pub const PROBLEM: &str = "application/problem+json";
}
