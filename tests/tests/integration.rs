//! Cross-crate tests, in one binary (one link, one process) to keep CI fast.

mod integration {
    pub mod alloc;
    pub mod conformance;
    pub mod corruption;
    pub mod determinism;
    pub mod export;
    pub mod golden;
    pub mod layers;
    pub mod layout;
    pub mod mirror;
    pub mod rules;
    pub mod table;
}

#[global_allocator]
static ALLOCATOR: integration::alloc::Counting = integration::alloc::Counting;
