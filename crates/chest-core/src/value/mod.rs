//! Values: how they become bytes ([`serializer`]) and what they weigh in
//! the memory budget ([`weigh`]).

pub mod serializer;
pub mod weigh;
