//! `#[derive(ShmSafe)]` and `#[derive(ShmShared)]` for
//! [shm-core](https://docs.rs/shm-core): put your own plain `#[repr(C)]`
//! struct in a segment or send it through a typed queue without writing
//! `unsafe`.
//!
//! Use them through shm-core's (or shm-queue's) `derive` feature, which
//! re-exports them next to the traits of the same name, as serde does:
//!
//! ```toml
//! shm-core = { version = "0.1", features = ["derive"] }
//! ```
//!
//! ```
//! # use shm_derive::ShmSafe; // with the feature: `use shm_core::ShmSafe;`
//! #[derive(Clone, Copy, ShmSafe)]
//! #[repr(C)]
//! struct Tick {
//!     seq: u64,
//!     price: [u32; 2],
//! }
//! # fn is_shm_safe<T: shm_core::ShmSafe>() {}
//! # is_shm_safe::<Tick>();
//! ```
//!
//! # What `#[derive(ShmSafe)]` checks
//!
//! The [`ShmSafe`](https://docs.rs/shm-core/latest/shm_core/trait.ShmSafe.html)
//! contract asks for a fixed layout, no pointers, and every bit pattern
//! valid. The derive proves it from the definition, at compile time:
//!
//! - the type is a struct (named fields, tuple or unit) marked
//!   `#[repr(C)]` or `#[repr(transparent)]` (`align(N)` may be added;
//!   `packed` is refused: an atomic must be aligned);
//! - it has no generic parameters (write `unsafe impl` by hand for a
//!   generic container, combining the parameters' ids with
//!   `combine_type_ids`, as `shm_sync::Mutex<T>` does);
//! - **every field's type is `ShmSafe`** (so no `String`, `Vec`, `Box`,
//!   reference, pointer, `bool`, `char` or enum);
//! - `Sync` and `'static` (supertraits of `ShmSafe`) hold.
//!
//! A struct of `ShmSafe` fields inherits all of their guarantees: its
//! layout is fixed by `repr(C)`, it holds nothing but their bytes (and
//! padding, which holds no value), and any bytes make a valid value of
//! each field, hence of the struct.
//!
//! # The type id is automatic
//!
//! `TYPE_ID` combines the struct's name (not its module path, so the same
//! definition in two programs matches), then, in order, each field's name
//! (`0`, `1`, ... for a tuple struct) and its type's `TYPE_ID`. Renaming,
//! reordering or retyping a field therefore changes the id, and
//! `Shared::open` or `TypedQueue::open` of a segment made with the old
//! definition fails with a fingerprint mismatch instead of misreading the
//! bytes. Size and alignment are in the fingerprint too.
//!
//! The generated `unsafe impl` comes from the macro, so a crate that says
//! `#![forbid(unsafe_code)]` can still derive: the lint does not fire on
//! it, and no `unsafe` is written in the user's code.
//!
//! # Attributes
//!
//! - `#[shm(crate = "path")]`: where shm-core is, if not at `::shm_core`.
//!   A user who depends only on shm-queue writes
//!   `#[shm(crate = "shm_queue::shm_core")]`.
//! - `#[shm(name = "Name")]`: the name hashed into the id instead of the
//!   struct's own, to rename a type without changing its id.
//!
//! # `#[derive(ShmShared)]`
//!
//! For a struct used in place behind `&T` (in a `Shared<T>`, through
//! `Segment::view`): on top of `ShmSafe` (derive both), it checks that
//! every field's type is `ShmShared` itself, that is made of atomics,
//! locks and other types whose every byte is changed only through
//! interior mutability.
//!
//! ```
//! # use shm_derive::{ShmSafe, ShmShared};
//! use std::sync::atomic::AtomicU64;
//!
//! #[derive(ShmSafe, ShmShared)]
//! #[repr(C)]
//! struct Counters {
//!     hits: AtomicU64,
//!     misses: AtomicU64,
//! }
//! # fn is_shm_shared<T: shm_core::ShmShared>() {}
//! # is_shm_shared::<Counters>();
//! ```
//!
//! # What is refused
//!
//! A field that is not `ShmSafe`:
//!
//! ```compile_fail
//! # use shm_derive::ShmSafe;
//! #[derive(ShmSafe)]
//! #[repr(C)]
//! struct Named {
//!     name: String, // a pointer into one process's heap
//! }
//! ```
//!
//! A struct without `#[repr(C)]` (its layout could differ between builds):
//!
//! ```compile_fail
//! # use shm_derive::ShmSafe;
//! #[derive(ShmSafe)]
//! struct Loose {
//!     a: u32,
//! }
//! ```
//!
//! A packed struct:
//!
//! ```compile_fail
//! # use shm_derive::ShmSafe;
//! #[derive(ShmSafe)]
//! #[repr(C, packed)]
//! struct Packed {
//!     a: u8,
//!     b: u32,
//! }
//! ```
//!
//! An enum (another process may write a byte that is no variant):
//!
//! ```compile_fail
//! # use shm_derive::ShmSafe;
//! #[derive(ShmSafe)]
//! #[repr(C)]
//! enum State {
//!     On,
//!     Off,
//! }
//! ```
//!
//! A generic struct:
//!
//! ```compile_fail
//! # use shm_derive::ShmSafe;
//! #[derive(ShmSafe)]
//! #[repr(C)]
//! struct Pair<T> {
//!     a: T,
//!     b: T,
//! }
//! ```
//!
//! A `ShmShared` struct with a plain field (a `&u64` over bytes another
//! process writes is undefined behaviour):
//!
//! ```compile_fail
//! # use shm_derive::{ShmSafe, ShmShared};
//! #[derive(ShmSafe, ShmShared)]
//! #[repr(C)]
//! struct Torn {
//!     value: u64,
//! }
//! ```
#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, LitStr, Path, Type, parse_macro_input};

/// Implements `shm_core::ShmSafe` for a `#[repr(C)]` or
/// `#[repr(transparent)]` struct whose every field is `ShmSafe`, with an
/// automatic `TYPE_ID`. See the [crate docs](crate) for the checks and the
/// `#[shm(...)]` attributes.
#[proc_macro_derive(ShmSafe, attributes(shm))]
pub fn derive_shm_safe(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input, Trait::ShmSafe)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Implements `shm_core::ShmShared` for a `#[repr(C)]` or
/// `#[repr(transparent)]` struct whose every field is `ShmShared`. Derive
/// `ShmSafe` too. See the [crate docs](crate).
#[proc_macro_derive(ShmShared, attributes(shm))]
pub fn derive_shm_shared(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input, Trait::ShmShared)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Trait {
    ShmSafe,
    ShmShared,
}

impl Trait {
    fn derive(self) -> &'static str {
        match self {
            Trait::ShmSafe => "#[derive(ShmSafe)]",
            Trait::ShmShared => "#[derive(ShmShared)]",
        }
    }
}

/// What the `#[shm(...)]` attributes say.
struct Options {
    krate: Path,
    name: Option<LitStr>,
}

fn options(input: &DeriveInput) -> syn::Result<Options> {
    let mut opts = Options {
        krate: syn::parse_quote!(::shm_core),
        name: None,
    };
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("shm")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                let lit: LitStr = meta.value()?.parse()?;
                opts.krate = lit.parse()?;
                Ok(())
            } else if meta.path.is_ident("name") {
                opts.name = Some(meta.value()?.parse()?);
                Ok(())
            } else {
                Err(meta.error(
                    "unknown `shm` attribute: expected `crate = \"...\"` or `name = \"...\"`",
                ))
            }
        })?;
    }
    Ok(opts)
}

/// Checks the `#[repr]`: `C` or `transparent` (with `align(N)` allowed),
/// never `packed`.
fn check_repr(input: &DeriveInput, which: Trait) -> syn::Result<()> {
    let mut fixed = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("repr")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("C") || meta.path.is_ident("transparent") {
                fixed = true;
                Ok(())
            } else if meta.path.is_ident("align") {
                // `align(N)`: only raises the alignment; skip the `(N)`.
                let content;
                syn::parenthesized!(content in meta.input);
                let _: syn::LitInt = content.parse()?;
                Ok(())
            } else if meta.path.is_ident("packed") {
                Err(meta.error(format!(
                    "{} refuses `#[repr(packed)]`: its fields may be unaligned, \
                     and atomics and locks must be aligned",
                    which.derive()
                )))
            } else {
                Err(meta.error(format!(
                    "{} needs `#[repr(C)]` or `#[repr(transparent)]`",
                    which.derive()
                )))
            }
        })?;
    }
    if fixed {
        Ok(())
    } else {
        Err(syn::Error::new(
            input.ident.span(),
            format!(
                "{} needs `#[repr(C)]` or `#[repr(transparent)]`: Rust's default layout \
                 may differ between builds, and every process must agree on it",
                which.derive()
            ),
        ))
    }
}

fn expand(input: &DeriveInput, which: Trait) -> syn::Result<TokenStream2> {
    let ident = &input.ident;
    let fields = match &input.data {
        Data::Struct(s) => &s.fields,
        Data::Enum(e) => {
            return Err(syn::Error::new(
                e.enum_token.span,
                format!(
                    "{} does not support enums: another process may write a \
                     discriminant that is no variant; store an integer and \
                     convert it with `TryFrom` after reading",
                    which.derive()
                ),
            ));
        }
        Data::Union(u) => {
            return Err(syn::Error::new(
                u.union_token.span,
                format!("{} does not support unions", which.derive()),
            ));
        }
    };
    if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            input.generics.span(),
            format!(
                "{} does not support generic types: write `unsafe impl ShmSafe` \
                 by hand, combining the parameters' ids with `combine_type_ids`",
                which.derive()
            ),
        ));
    }
    check_repr(input, which)?;
    let opts = options(input)?;
    let krate = &opts.krate;

    let (names, types): (Vec<String>, Vec<&Type>) = match fields {
        Fields::Named(f) => f
            .named
            .iter()
            .map(|f| {
                (
                    f.ident
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    &f.ty,
                )
            })
            .unzip(),
        Fields::Unnamed(f) => f
            .unnamed
            .iter()
            .enumerate()
            .map(|(i, f)| (i.to_string(), &f.ty))
            .unzip(),
        Fields::Unit => (Vec::new(), Vec::new()),
    };

    let out = match which {
        Trait::ShmSafe => {
            let name = opts
                .name
                .unwrap_or_else(|| LitStr::new(&ident.to_string(), Span::call_site()));
            let checks = types.iter().map(|ty| {
                quote_spanned! {ty.span()=> field_is_shm_safe::<#ty>(); }
            });
            let steps = names.iter().zip(&types).map(|(field, ty)| {
                quote_spanned! {ty.span()=>
                    let id = #krate::combine_type_ids(id, #krate::type_id(#field));
                    let id = #krate::combine_type_ids(id, <#ty as #krate::ShmSafe>::TYPE_ID);
                }
            });
            quote! {
                // Every field's type must be `ShmSafe`: a clear error on the
                // field that is not.
                const _: () = {
                    const fn field_is_shm_safe<T: #krate::ShmSafe>() {}
                    #(#checks)*
                };

                // SAFETY: `#[derive(ShmSafe)]` checked that this is a
                // non-generic `#[repr(C)]` or `#[repr(transparent)]` struct,
                // not packed, and (the constant above) that every field's
                // type is `ShmSafe`. Its layout is therefore fixed, it holds
                // only its fields' bytes and padding, every bit pattern is a
                // valid value of each field and so of the struct, and
                // mutation through `&Self` can only go through the fields'
                // own interior mutability. `Sync + 'static` are checked by
                // the trait's supertraits. The id is a pure function of the
                // definition.
                #[automatically_derived]
                unsafe impl #krate::ShmSafe for #ident {
                    const TYPE_ID: u64 = {
                        let id = #krate::type_id(#name);
                        #(#steps)*
                        id
                    };
                }
            }
        }
        Trait::ShmShared => {
            let checks = types.iter().map(|ty| {
                quote_spanned! {ty.span()=> field_is_shm_shared::<#ty>(); }
            });
            quote! {
                // Every field's type must be `ShmShared`.
                const _: () = {
                    const fn field_is_shm_shared<T: #krate::ShmShared>() {}
                    #(#checks)*
                };

                // SAFETY: `#[derive(ShmShared)]` checked a non-generic,
                // non-packed `#[repr(C)]`/`#[repr(transparent)]` struct
                // whose every field is `ShmShared`: every non-padding byte
                // belongs to a field whose bytes are all inside atomics or
                // `UnsafeCell`s used under that field's own protocol.
                // `ShmSafe` is checked by the supertrait bound.
                #[automatically_derived]
                unsafe impl #krate::ShmShared for #ident {}
            }
        }
    };
    Ok(out)
}
