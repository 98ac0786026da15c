//! users-service: the users and identity service of the platform.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod jobs;
pub mod memory;
pub mod metrics;
pub mod providers;
pub mod repo;
pub mod service;
pub mod state;
pub mod telemetry;
