//! PyTorch checkpoints (`.pth`, `.pt`, `.bin`) without Python: the zip format `torch.save`
//! writes since PyTorch 1.6, read with a restricted unpickler that never runs code.
//!
//! The archive: `<name>/data.pkl` (the pickled object), `<name>/data/<key>` (one raw,
//! little-endian storage per key; stored, not compressed), `<name>/byteorder`, `<name>/version`.
//! A tensor in `data.pkl` is `torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
//! requires_grad, hooks)`, its storage a persistent id `('storage', torch.FloatStorage, key,
//! location, numel)` (BINPERSID), a parameter `_rebuild_parameter(tensor, requires_grad, hooks)`
//! and a state_dict an `collections.OrderedDict` filled by SETITEMS (its `_metadata` attribute
//! comes as a BUILD and is dropped).
//!
//! The unpickler is a stack machine over the protocol 0–5 opcodes that build plain data (ints,
//! floats, strings, bytes, tuples, lists, dicts, memo, marks). The only callables it knows are the
//! ones above, resolved by name to Rust code that builds a tensor *description*; a few inert
//! globals found next to state_dicts in training checkpoints (`argparse.Namespace`, numpy
//! scalars and dtypes, `_codecs.encode` for protocol-2 bytes) become opaque values that are
//! never called. Any other GLOBAL / STACK_GLOBAL (say `posix.system`, `builtins.eval`, a model
//! class) and every object-building opcode (INST, OBJ, NEWOBJ on anything else, EXT*, PERSID) is
//! an error naming it — nothing is imported or executed, so a malicious file can only fail.
//!
//! After unpickling: the state_dict is found (the top-level dict, or under `state_dict`, `model`,
//! `model_ema`, `state_dict_ema`, `module`), `module.` / `_orig_mod.` key prefixes are removed,
//! and each tensor is gathered from its storage honouring offset and strides (views, transposes
//! and shared storages come out right), bounds-checked against the storage's size.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};
use std::rc::Rc;

use safetensors::Dtype;

use crate::error::{Error, Result};
use super::RawTensor;

/// True for a zip archive (what `torch.save` writes since 1.6).
pub fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")
}

/// True for the pre-1.6 `torch.save` format: a bare pickle starting with PyTorch's magic number.
pub fn is_legacy_torch(bytes: &[u8]) -> bool {
    // PROTO 2, LONG1 of 10 bytes: 0x1950a86a20f9469cfc6c
    bytes.starts_with(&[0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19])
}

/// The storage types: element dtype and size. Names as pickled by `torch.save` (the legacy
/// typed-storage classes, still what PyTorch 2 writes).
const STORAGES: &[(&str, Dtype, usize)] = &[
    ("FloatStorage", Dtype::F32, 4),
    ("HalfStorage", Dtype::F16, 2),
    ("BFloat16Storage", Dtype::BF16, 2),
    ("DoubleStorage", Dtype::F64, 8),
    ("LongStorage", Dtype::I64, 8),
    ("IntStorage", Dtype::I32, 4),
    ("ShortStorage", Dtype::I16, 2),
    ("CharStorage", Dtype::I8, 1),
    ("ByteStorage", Dtype::U8, 1),
    ("BoolStorage", Dtype::BOOL, 1),
];

/// Globals that are plain data in training checkpoints: they become [`Value::Opaque`] and are
/// never called.
const INERT: &[&str] = &[
    "argparse.Namespace",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.dtype",
    "_codecs.encode",
    "torch.device",
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Callable {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
}

#[derive(Debug)]
struct StorageRef {
    key: String,
    dtype: Dtype,
    elem: usize,
    numel: usize,
}

#[derive(Debug)]
struct TensorRef {
    storage: Rc<StorageRef>,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// A value on the unpickler's stack. Plain data is kept as read (floats and bytes are never
/// interpreted, only carried).
#[derive(Clone, Debug)]
#[allow(dead_code)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<[Value]>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    Callable(Callable),
    StorageType(Dtype, usize),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
    /// An inert global or the result of "calling" one: data wgvit does not interpret.
    Opaque(Rc<str>),
}

/// Dropping is iterative: a pickle nesting a million tuples would otherwise overflow the stack
/// when its values are freed.
impl Drop for Value {
    fn drop(&mut self) {
        fn take_children(v: &mut Value, out: &mut Vec<Value>) {
            match v {
                Value::Tuple(items) => {
                    if let Some(items) = Rc::get_mut(items) {
                        out.extend(items.iter_mut().map(|x| std::mem::replace(x, Value::None)));
                    }
                }
                Value::List(l) => {
                    if let Some(l) = Rc::get_mut(l) {
                        out.append(l.get_mut());
                    }
                }
                Value::Dict(d) => {
                    if let Some(d) = Rc::get_mut(d) {
                        for (k, v) in d.get_mut().drain(..) {
                            out.push(k);
                            out.push(v);
                        }
                    }
                }
                _ => {}
            }
        }
        let mut pending = Vec::new();
        take_children(self, &mut pending);
        while let Some(mut v) = pending.pop() {
            take_children(&mut v, &mut pending);
        }
    }
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Callable(_) => "function",
            Value::StorageType(..) => "storage type",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
            Value::Opaque(_) => "object",
        }
    }
}

fn opcode_name(op: u8) -> &'static str {
    match op {
        b'i' => "INST",
        b'o' => "OBJ",
        0x81 => "NEWOBJ",
        0x92 => "NEWOBJ_EX",
        b'P' => "PERSID",
        0x82..=0x84 => "EXT",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        b'S' => "STRING",
        b'V' => "UNICODE",
        _ => "unknown",
    }
}

/// Limits that keep a hostile pickle from exhausting memory before it fails.
const MAX_STACK: usize = 1 << 20;
const MAX_DIMS: usize = 16;

struct Unpickler<'a> {
    file: &'a str,
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
}

impl<'a> Unpickler<'a> {
    fn err(&self, reason: impl std::fmt::Display) -> Error {
        Error::MalformedCheckpoint { file: self.file.to_string(), reason: format!("data.pkl byte {}: {reason}", self.pos) }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.data.len() - self.pos {
            return Err(self.err(format!("truncated pickle: {n} bytes wanted, {} left", self.data.len() - self.pos)));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.data[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or_else(|| self.err("unterminated text argument"))?;
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| self.err("text argument is not UTF-8"))
    }

    fn len_u64(&mut self, n: u64) -> Result<usize> {
        usize::try_from(n).ok().filter(|&n| n <= self.data.len() - self.pos).ok_or_else(|| self.err(format!("length {n} runs past the end of the pickle")))
    }

    fn push(&mut self, v: Value) -> Result<()> {
        if self.stack.len() >= MAX_STACK {
            return Err(self.err("stack too deep"));
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("stack underflow"));
        }
        Ok(self.stack.pop().expect("checked above"))
    }

    fn top(&self) -> Result<&Value> {
        self.stack.last().ok_or_else(|| self.err("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let m = self.marks.pop().ok_or_else(|| self.err("no MARK to pop to"))?;
        Ok(self.stack.split_off(m.min(self.stack.len())))
    }

    fn memo_get(&self, i: u64) -> Result<Value> {
        self.memo.get(&i).cloned().ok_or_else(|| self.err(format!("memo entry {i} is not set")))
    }

    fn memo_put(&mut self, i: u64) -> Result<()> {
        let v = self.top()?.clone();
        self.memo.insert(i, v);
        Ok(())
    }

    fn text_str(&self, bytes: &[u8]) -> Result<Value> {
        let s = std::str::from_utf8(bytes).map_err(|_| self.err("string is not valid UTF-8"))?;
        Ok(Value::Str(s.into()))
    }

    /// GLOBAL / STACK_GLOBAL: only names on the allow-lists resolve; nothing is imported.
    fn global(&self, module: &str, name: &str) -> Result<Value> {
        let full = format!("{module}.{name}");
        let v = match full.as_str() {
            "collections.OrderedDict" => Value::Callable(Callable::OrderedDict),
            "torch._utils._rebuild_tensor_v2" => Value::Callable(Callable::RebuildTensorV2),
            "torch._utils._rebuild_parameter" => Value::Callable(Callable::RebuildParameter),
            "torch._utils._rebuild_parameter_with_state" => Value::Callable(Callable::RebuildParameterWithState),
            _ => {
                if let Some(&(_, dtype, elem)) = STORAGES.iter().find(|(n, ..)| module == "torch" && *n == name) {
                    Value::StorageType(dtype, elem)
                } else if INERT.contains(&full.as_str()) {
                    Value::Opaque(full.into())
                } else {
                    return Err(Error::MalformedCheckpoint {
                        file: self.file.to_string(),
                        reason: format!(
                            "refusing to load global '{full}' (data.pkl byte {}): a .pth file is a Python pickle that can run code; \
                             wgvit only rebuilds tensors, storages and OrderedDicts and never imports or calls anything else \
                             (a whole pickled model? save its state_dict() instead)",
                            self.pos
                        ),
                    });
                }
            }
        };
        Ok(v)
    }

    fn int_arg(&self, v: &Value, what: &str) -> Result<usize> {
        match v {
            Value::Int(i) if *i >= 0 => Ok(*i as usize),
            Value::Bool(b) => Ok(*b as usize),
            other => Err(self.err(format!("{what}: expected a non-negative int, found {}", other.kind()))),
        }
    }

    fn dims(&self, v: &Value, what: &str) -> Result<Vec<usize>> {
        match v {
            Value::Tuple(items) if items.len() <= MAX_DIMS => items.iter().map(|d| self.int_arg(d, what)).collect(),
            Value::List(items) if items.borrow().len() <= MAX_DIMS => items.borrow().iter().map(|d| self.int_arg(d, what)).collect(),
            other => Err(self.err(format!("{what}: expected a tuple of at most {MAX_DIMS} ints, found {}", other.kind()))),
        }
    }

    /// REDUCE of an allowed callable.
    fn call(&self, f: Callable, args: &[Value]) -> Result<Value> {
        match f {
            Callable::OrderedDict => {
                let mut items = Vec::new();
                if let Some(Value::List(pairs)) = args.first() {
                    for p in pairs.borrow().iter() {
                        match p {
                            Value::Tuple(kv) if kv.len() == 2 => items.push((kv[0].clone(), kv[1].clone())),
                            other => return Err(self.err(format!("OrderedDict item: expected a (key, value) tuple, found {}", other.kind()))),
                        }
                    }
                }
                Ok(Value::Dict(Rc::new(RefCell::new(items))))
            }
            Callable::RebuildTensorV2 => {
                if args.len() < 4 {
                    return Err(self.err(format!("_rebuild_tensor_v2 takes (storage, offset, size, stride, ...), got {} arguments", args.len())));
                }
                let Value::Storage(storage) = &args[0] else {
                    return Err(self.err(format!("_rebuild_tensor_v2: expected a storage, found {}", args[0].kind())));
                };
                let offset = self.int_arg(&args[1], "tensor storage offset")?;
                let shape = self.dims(&args[2], "tensor size")?;
                let stride = self.dims(&args[3], "tensor stride")?;
                if shape.len() != stride.len() {
                    return Err(self.err(format!("tensor size {shape:?} and stride {stride:?} differ in rank")));
                }
                Ok(Value::Tensor(Rc::new(TensorRef { storage: storage.clone(), offset, shape, stride })))
            }
            Callable::RebuildParameter | Callable::RebuildParameterWithState => match args.first() {
                Some(t @ Value::Tensor(_)) => Ok(t.clone()),
                other => Err(self.err(format!("_rebuild_parameter: expected a tensor, found {}", other.map_or("nothing", Value::kind)))),
            },
        }
    }

    /// BINPERSID: `('storage', <storage type>, key, location, numel)`.
    fn persistent_load(&self, pid: Value) -> Result<Value> {
        let Value::Tuple(t) = &pid else {
            return Err(self.err(format!("persistent id: expected a tuple, found {}", pid.kind())));
        };
        match &t[..] {
            [Value::Str(tag), Value::StorageType(dtype, elem), key, _location, numel] if &**tag == "storage" => {
                let key = match key {
                    Value::Str(s) => s.to_string(),
                    Value::Int(i) => i.to_string(),
                    other => return Err(self.err(format!("storage key: expected a string, found {}", other.kind()))),
                };
                let numel = self.int_arg(numel, "storage size")?;
                Ok(Value::Storage(Rc::new(StorageRef { key, dtype: *dtype, elem: *elem, numel })))
            }
            _ => Err(self.err("persistent id is not ('storage', <torch storage type>, key, location, numel)")),
        }
    }

    fn run(mut self) -> Result<Value> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO n
                }
                0x95 => {
                    self.le::<8>()?; // FRAME: a size hint
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b')' => self.push(Value::Tuple(Rc::from(Vec::new())))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items.into()))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(items.into()))?
                }
                b']' => self.push(Value::List(Rc::default()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(Rc::new(RefCell::new(items))))?
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(l) => l.borrow_mut().push(v),
                        other => return Err(self.err(format!("APPEND to a {}", other.kind()))),
                    }
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.borrow_mut().extend(items),
                        other => return Err(self.err(format!("APPENDS to a {}", other.kind()))),
                    }
                }
                0x8f => self.push(Value::List(Rc::default()))?, // EMPTY_SET (kept as a list)
                0x91 => {
                    let items = self.pop_mark()?; // FROZENSET
                    self.push(Value::List(Rc::new(RefCell::new(items))))?
                }
                b'}' => self.push(Value::Dict(Rc::default()))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(self.err("DICT with an odd number of items"));
                    }
                    let pairs = items.chunks_exact(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect();
                    self.push(Value::Dict(Rc::new(RefCell::new(pairs))))?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Value::Dict(d) => d.borrow_mut().push((k, v)),
                        other => return Err(self.err(format!("SETITEM on a {}", other.kind()))),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(self.err("SETITEMS with an odd number of items"));
                    }
                    match self.top()? {
                        Value::Dict(d) => d.borrow_mut().extend(items.chunks_exact(2).map(|kv| (kv[0].clone(), kv[1].clone()))),
                        other => return Err(self.err(format!("SETITEMS on a {}", other.kind()))),
                    }
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?);
                    self.push(Value::Int(v as i64))?
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64))?
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?);
                    self.push(Value::Int(v as i64))?
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let bytes = self.take(n)?;
                    if n > 8 {
                        return Err(self.err(format!("integer of {n} bytes does not fit in 64 bits")));
                    }
                    let mut v: i64 = 0;
                    for (i, &b) in bytes.iter().enumerate() {
                        v |= (b as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && bytes[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n); // two's complement sign
                    }
                    self.push(Value::Int(v))?
                }
                b'I' | b'L' => {
                    let text = self.line()?.trim_end_matches('L');
                    let v = match text {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        t => Value::Int(t.parse().map_err(|_| self.err(format!("bad integer literal {t:?}")))?),
                    };
                    self.push(v)?
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le()?);
                    self.push(Value::Float(v))?
                }
                b'F' => {
                    let t = self.line()?;
                    let v = t.trim().parse().map_err(|_| self.err(format!("bad float literal {t:?}")))?;
                    self.push(Value::Float(v))?
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => u32::from_le_bytes(self.le()?) as u64,
                        0x8c => self.u8()? as u64,
                        _ => u64::from_le_bytes(self.le()?),
                    };
                    let n = self.len_u64(n)?;
                    let bytes = self.take(n)?;
                    let v = self.text_str(bytes)?;
                    self.push(v)?
                }
                b'T' | b'U' => {
                    // Python 2 str: bytes, read as Latin-1 text
                    let n = if op == b'T' { u32::from_le_bytes(self.le()?) as u64 } else { self.u8()? as u64 };
                    let n = self.len_u64(n)?;
                    let s: String = self.take(n)?.iter().map(|&b| b as char).collect();
                    self.push(Value::Str(s.into()))?
                }
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => u32::from_le_bytes(self.le()?) as u64,
                        b'C' => self.u8()? as u64,
                        _ => u64::from_le_bytes(self.le()?),
                    };
                    let n = self.len_u64(n)?;
                    let bytes = self.take(n)?;
                    self.push(Value::Bytes(bytes.into()))?
                }
                b'q' => {
                    let i = self.u8()? as u64;
                    self.memo_put(i)?
                }
                b'r' => {
                    let i = u32::from_le_bytes(self.le()?) as u64;
                    self.memo_put(i)?
                }
                0x94 => {
                    let i = self.memo.len() as u64;
                    self.memo_put(i)?
                }
                b'p' => {
                    let t = self.line()?;
                    let i = t.parse().map_err(|_| self.err(format!("bad memo index {t:?}")))?;
                    self.memo_put(i)?
                }
                b'h' => {
                    let i = self.u8()? as u64;
                    let v = self.memo_get(i)?;
                    self.push(v)?
                }
                b'j' => {
                    let i = u32::from_le_bytes(self.le()?) as u64;
                    let v = self.memo_get(i)?;
                    self.push(v)?
                }
                b'g' => {
                    let t = self.line()?;
                    let i = t.parse().map_err(|_| self.err(format!("bad memo index {t:?}")))?;
                    let v = self.memo_get(i)?;
                    self.push(v)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let v = self.global(module, name)?;
                    self.push(v)?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
                        return Err(self.err("STACK_GLOBAL needs two strings"));
                    };
                    let v = self.global(module, name)?;
                    self.push(v)?
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let Value::Tuple(args) = &args else {
                        return Err(self.err(format!("REDUCE arguments: expected a tuple, found {}", args.kind())));
                    };
                    let v = match &f {
                        Value::Callable(c) => self.call(*c, args)?,
                        Value::Opaque(name) => Value::Opaque(name.clone()),
                        other => return Err(self.err(format!("cannot call a {} (only tensor-rebuild functions and OrderedDict are allowed)", other.kind()))),
                    };
                    self.push(v)?
                }
                0x81 => {
                    let _args = self.pop()?;
                    match &self.pop()? {
                        Value::Opaque(name) => self.push(Value::Opaque(name.clone()))?,
                        other => return Err(self.err(format!("refusing NEWOBJ of a {}: wgvit never instantiates objects from a checkpoint", other.kind()))),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.push(v)?
                }
                b'b' => {
                    // BUILD: an OrderedDict's `_metadata`, a parameter's state or a Namespace's
                    // fields; none of them matter for inference.
                    let _state = self.pop()?;
                    match self.top()? {
                        Value::Dict(_) | Value::Tensor(_) | Value::Opaque(_) => {}
                        other => return Err(self.err(format!("refusing BUILD on a {}", other.kind()))),
                    }
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)?
                }
                _ => {
                    return Err(self.err(format!(
                        "unsupported pickle opcode 0x{op:02x} ({}): wgvit reads state_dicts of tensors and never builds arbitrary objects",
                        opcode_name(op)
                    )))
                }
            }
        }
    }
}

/// Container keys under which training scripts store the state_dict, in the order tried.
const CONTAINERS: &[&str] = &["state_dict", "model", "model_ema", "state_dict_ema", "module", "net"];
/// Key prefixes added by wrappers: DataParallel/DDP and `torch.compile`.
const PREFIXES: &[&str] = &["module.", "_orig_mod."];

fn dict_items(v: &Value) -> Option<Vec<(Value, Value)>> {
    match v {
        Value::Dict(d) => Some(d.borrow().clone()),
        _ => None,
    }
}

/// The tensors of the state_dict inside `root` with their names, or a description of what was
/// found instead.
fn find_state_dict(root: &Value) -> std::result::Result<Vec<(String, Rc<TensorRef>)>, String> {
    let mut v = root.clone();
    for _ in 0..8 {
        let Some(items) = dict_items(&v) else {
            return Err(format!("the checkpoint holds a {}, not a dict of tensors", v.kind()));
        };
        let tensors: Vec<(String, Rc<TensorRef>)> = items
            .iter()
            .filter_map(|(k, t)| match (k, t) {
                (Value::Str(k), Value::Tensor(t)) => Some((k.to_string(), t.clone())),
                _ => None,
            })
            .collect();
        if !tensors.is_empty() {
            return Ok(tensors);
        }
        let inner = CONTAINERS.iter().find_map(|c| items.iter().find(|(k, _)| matches!(k, Value::Str(s) if &**s == *c)).map(|(_, v)| v.clone()));
        match inner {
            Some(inner) => v = inner,
            None => {
                let keys: Vec<String> = items
                    .iter()
                    .take(12)
                    .map(|(k, _)| match k {
                        Value::Str(s) => format!("'{s}'"),
                        other => other.kind().to_string(),
                    })
                    .collect();
                return Err(format!(
                    "no tensors found: expected a state_dict, at the top level or under one of {CONTAINERS:?}; keys found: [{}]",
                    keys.join(", ")
                ));
            }
        }
    }
    Err("no state_dict found within 8 nested containers".into())
}

fn strip_prefixes(mut name: &str) -> &str {
    while let Some(rest) = PREFIXES.iter().find_map(|p| name.strip_prefix(p)) {
        name = rest;
    }
    name
}

/// Reads every tensor of the state_dict in a `torch.save` zip checkpoint, as contiguous
/// little-endian bytes in the checkpoint's dtype. `file` names it in errors.
pub fn read_pth(file: &str, bytes: &[u8]) -> Result<Vec<RawTensor>> {
    let bad = |reason: String| Error::MalformedCheckpoint { file: file.to_string(), reason };
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| bad(format!("not a readable zip archive: {e}")))?;
    let pkl_name = zip
        .file_names()
        .filter(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
        .min_by_key(|n| n.len())
        .map(str::to_string)
        .ok_or_else(|| bad("zip archive without data.pkl: not a torch.save checkpoint".into()))?;
    let prefix = pkl_name[..pkl_name.len() - "data.pkl".len()].to_string();

    let read_entry = |name: &str, zip: &mut zip::ZipArchive<Cursor<&[u8]>>| -> Result<Option<Vec<u8>>> {
        let mut entry = match zip.by_name(name) {
            Ok(e) => e,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(bad(format!("entry '{name}': {e}"))),
        };
        let mut out = Vec::with_capacity(entry.size().min(bytes.len() as u64) as usize);
        entry.read_to_end(&mut out).map_err(|e| bad(format!("entry '{name}': {e}")))?;
        Ok(Some(out))
    };

    if let Some(order) = read_entry(&format!("{prefix}byteorder"), &mut zip)? {
        if order.trim_ascii() != b"little" {
            return Err(bad(format!("byte order '{}' is not supported (little-endian only)", String::from_utf8_lossy(&order))));
        }
    }
    let pkl = read_entry(&pkl_name, &mut zip)?.ok_or_else(|| bad("data.pkl vanished".into()))?;
    let root = Unpickler { file, data: &pkl, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() }.run()?;
    let tensors = find_state_dict(&root).map_err(bad)?;

    let mut storages: HashMap<String, Rc<Vec<u8>>> = HashMap::new();
    let mut out: BTreeMap<String, RawTensor> = BTreeMap::new();
    for (name, t) in tensors {
        let s = &t.storage;
        let data = match storages.get(&s.key) {
            Some(d) => d.clone(),
            None => {
                let entry = format!("{prefix}data/{}", s.key);
                let d = read_entry(&entry, &mut zip)?.ok_or_else(|| bad(format!("tensor '{name}': storage entry '{entry}' is missing")))?;
                let d = Rc::new(d);
                storages.insert(s.key.clone(), d.clone());
                d
            }
        };
        let needed = s.numel.checked_mul(s.elem).ok_or_else(|| bad(format!("tensor '{name}': storage size overflows")))?;
        if data.len() < needed {
            return Err(bad(format!("tensor '{name}': storage '{}' holds {} bytes, its {} elements need {needed}", s.key, data.len(), s.numel)));
        }
        let contiguous = gather(&t, &data).map_err(|reason| bad(format!("tensor '{name}': {reason}")))?;
        let clean = strip_prefixes(&name).to_string();
        if out.contains_key(&clean) {
            log::warn!("{file}: tensor '{clean}' appears twice (after removing 'module.' prefixes); keeping '{name}'");
        }
        out.insert(clean.clone(), RawTensor { name: clean, dtype: s.dtype, shape: t.shape.clone(), data: contiguous });
    }
    Ok(out.into_values().collect())
}

/// The elements of a strided view, in row-major order, bounds-checked against the storage.
fn gather(t: &TensorRef, storage: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let elem = t.storage.elem;
    let numel = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("size overflows")?;
    if numel == 0 {
        return Ok(Vec::new());
    }
    // Highest element index the view touches.
    let mut last = t.offset;
    for (&d, &s) in t.shape.iter().zip(&t.stride) {
        last = (d - 1).checked_mul(s).and_then(|x| x.checked_add(last)).ok_or("strides overflow")?;
    }
    if last >= t.storage.numel {
        return Err(format!(
            "view (offset {}, size {:?}, stride {:?}) reaches element {last} of a storage of {}",
            t.offset, t.shape, t.stride, t.storage.numel
        ));
    }
    let mut expected = 1usize;
    let is_contiguous = t.shape.iter().zip(&t.stride).rev().all(|(&d, &s)| {
        let ok = d == 1 || s == expected;
        expected *= d;
        ok
    });
    if is_contiguous {
        return Ok(storage[t.offset * elem..(t.offset + numel) * elem].to_vec());
    }
    let mut out = Vec::with_capacity(numel * elem);
    let rank = t.shape.len();
    let mut index = vec![0usize; rank];
    let mut at = t.offset;
    for _ in 0..numel {
        out.extend_from_slice(&storage[at * elem..(at + 1) * elem]);
        // Odometer increment, last axis fastest. Wrapping: the stride of a size-1 axis is
        // unchecked and may be huge; stepping past an axis's end is undone right away, so every
        // position read is a valid index (bounded by `last` above).
        for axis in (0..rank).rev() {
            index[axis] += 1;
            at = at.wrapping_add(t.stride[axis]);
            if index[axis] < t.shape[axis] {
                break;
            }
            at = at.wrapping_sub(t.stride[axis].wrapping_mul(t.shape[axis]));
            index[axis] = 0;
        }
    }
    Ok(out)
}
