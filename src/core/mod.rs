//! Core helpers every layer uses: errors, validated names, settings, SPI, subtransactions,
//! the privilege boundary and the advisory locks. Nothing here depends on another folder.

pub mod audit;
pub mod catalog;
pub mod db;
pub mod ddl_script;
pub mod errors;
pub mod locks;
pub mod name;
pub mod restricted;
pub mod settings;
pub mod subxact;
pub mod trigger;
