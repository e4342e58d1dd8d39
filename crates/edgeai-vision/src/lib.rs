//! # edgeai-vision
//!
//! Face recognition on the `edgeai-core` [`Model`](edgeai_core::Model) /
//! [`Backend`](edgeai_core::Backend) traits: image decoding, face detection with five
//! landmarks, ArcFace alignment, embeddings and a persistent gallery. It depends on no
//! backend crate: any backend that loads the models runs the pipeline.
//!
//! - [`Image`]: JPEG/PNG decoding with a pixel limit, raw camera buffers, resize,
//!   letterbox, NCHW tensors.
//! - [`FaceDetector`] with [`YuNet`]; [`nms`].
//! - [`align`]: Umeyama similarity transform to the ArcFace template, bilinear warp.
//! - [`FaceEmbedder`] with [`SFace`].
//! - [`Gallery`]: SQLite-backed identities, f32 or int8 search ([`EmbeddingIndex`]).
//! - [`FaceRecognizer`]: detector + embedder in one call.
#![warn(missing_docs)]

pub mod align;
pub mod blazeface;
pub mod detect;
pub mod draw;
pub mod embed;
mod error;
pub mod gallery;
pub mod image;
pub mod index;
mod pipeline;

pub use crate::image::{ChannelOrder, Image, ImageLimits, Normalization, PixelFormat};
pub use blazeface::{BlazeFace, BlazeFaceConfig};
pub use detect::{nms, BBox, Face, FaceDetector, YuNet, YuNetConfig};
pub use embed::{cosine, FaceEmbedder, SFace, SFACE_COSINE_THRESHOLD};
pub use error::{Error, Result};
pub use gallery::{verify, Gallery, GalleryConfig, Identification, Verification};
pub use index::{EmbeddingIndex, Match, RowSource, RowStorage, SearchPrecision};
pub use pipeline::{FaceRecognizer, RecognizedFace};
