//! Link definitions: the SQL API that creates and changes them, their validation, and the
//! loading of a link from the catalog tables.

pub mod api;
pub mod fields;
pub mod link;
pub mod owner;
pub mod regclass;
pub mod table;
