//! Copies of schemas: the template's DDL generators and the copy of a whole schema with its data.

pub mod bulk;
pub mod catalog;
pub mod order;
pub mod remote;
pub mod schema_copy;
pub mod statements;
pub mod structure;
pub mod template;
pub mod template_rows;
pub mod trigger_text;
pub mod trusted_keys;
