//! Baking a snapshot into the edge module's data, so that every instance
//! of the resulting module shares the snapshot's pages copy-on-write
//! (wasmtime's memory images): memory stays one snapshot, however many
//! worker threads instantiate it.

use wasm_encoder::{ConstExpr, DataCountSection, DataSection, MemorySection, MemoryType, Module, RawSection};
use wasmparser::{DataKind, Operator, Parser, Payload};

const PAGE: u64 = 65536;

/// The module with the snapshot baked in, and where the snapshot lies.
#[derive(Debug)]
pub struct Baked {
    pub module: Vec<u8>,
    /// Guest address of the snapshot's first byte (page-aligned).
    pub ptr: u32,
    pub len: u32,
}

/// Why a snapshot cannot be baked into the module.
#[derive(Debug, thiserror::Error)]
pub enum BakeError {
    #[error("the edge module is malformed: {0}")]
    Parse(#[from] wasmparser::BinaryReaderError),
    #[error("the edge module does not have exactly one 32-bit memory")]
    Memory,
    #[error("the edge module has a data segment this baker does not understand")]
    Segment,
    #[error("a {len}-byte snapshot does not fit in a 4 GiB WebAssembly memory")]
    TooLarge { len: usize },
}

/// Appends `snapshot` as an active data segment placed right after the
/// module's initial memory, and raises the memory's minimum to cover it.
pub fn bake(base: &[u8], snapshot: &[u8]) -> Result<Baked, BakeError> {
    let len = u32::try_from(snapshot.len()).map_err(|_| BakeError::TooLarge { len: snapshot.len() })?;
    let mut out = Module::new();
    let mut placed: Option<u32> = None;
    let mut data_done = false;
    let mut data = DataSection::new();
    for payload in Parser::new(0).parse_all(base) {
        let payload = payload?;
        match &payload {
            Payload::Version { .. } | Payload::CodeSectionEntry(_) => {}
            Payload::MemorySection(reader) => {
                let memories: Vec<_> = reader.clone().into_iter().collect::<Result<_, _>>()?;
                let [m] = memories.as_slice() else { return Err(BakeError::Memory) };
                if m.memory64 || m.shared {
                    return Err(BakeError::Memory);
                }
                let ptr = m.initial * PAGE;
                let pages = (ptr + len as u64).div_ceil(PAGE);
                if pages > 65536 || m.maximum.is_some_and(|max| pages > max) {
                    return Err(BakeError::TooLarge { len: snapshot.len() });
                }
                placed = Some(u32::try_from(ptr).map_err(|_| BakeError::TooLarge { len: snapshot.len() })?);
                let mut section = MemorySection::new();
                section.memory(MemoryType {
                    minimum: pages,
                    maximum: m.maximum,
                    memory64: false,
                    shared: false,
                    page_size_log2: m.page_size_log2,
                });
                out.section(&section);
            }
            Payload::DataCountSection { count, .. } => {
                out.section(&DataCountSection { count: count + 1 });
            }
            Payload::DataSection(reader) => {
                for segment in reader.clone() {
                    let segment = segment?;
                    match segment.kind {
                        DataKind::Passive => {
                            data.passive(segment.data.iter().copied());
                        }
                        DataKind::Active { memory_index, offset_expr } => {
                            let mut ops = offset_expr.get_operators_reader();
                            let Operator::I32Const { value } = ops.read()? else { return Err(BakeError::Segment) };
                            data.active(memory_index, &ConstExpr::i32_const(value), segment.data.iter().copied());
                        }
                    }
                }
                let ptr = placed.ok_or(BakeError::Memory)?;
                data.active(0, &ConstExpr::i32_const(ptr as i32), snapshot.iter().copied());
                out.section(&data);
                data_done = true;
            }
            Payload::End(_) => {}
            other => {
                if let Some((id, range)) = other.as_section() {
                    out.section(&RawSection { id, data: &base[range] });
                }
            }
        }
    }
    if !data_done {
        let ptr = placed.ok_or(BakeError::Memory)?;
        data.active(0, &ConstExpr::i32_const(ptr as i32), snapshot.iter().copied());
        out.section(&data);
    }
    Ok(Baked { module: out.finish(), ptr: placed.ok_or(BakeError::Memory)?, len })
}
