//! A plugin that fails on purpose, to prove the host survives: `mode` in its options picks where.
//! In `ok` mode it is a working (if dull) backend: logits are the first C inputs, gradients one-hot.

use std::path::Path;

use serde::Deserialize;
use vog_core::{
    BackendInfo, Classes, Error, GradOutput, GradRequest, GradientBackend, Model, Result,
};
use vog_plugin::PluginBackend;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    Ok,
    PanicOnCreate,
    ErrorOnLoad,
    PanicOnLoad,
    ErrorInGradients,
    PanicInGradients,
    ShortGradient,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    mode: Mode,
}

struct Faulty {
    mode: Mode,
}

struct FaultyModel {
    mode: Mode,
}

impl GradientBackend for Faulty {
    fn info(&self) -> BackendInfo {
        Self::describe()
    }

    fn load(&self, checkpoint: &Path) -> Result<Box<dyn Model>> {
        match self.mode {
            Mode::ErrorOnLoad => Err(Error::backend(
                "faulty",
                format!("refusing to load {}", checkpoint.display()),
            )),
            Mode::PanicOnLoad => panic!(
                "faulty plugin panics while loading {}",
                checkpoint.display()
            ),
            mode => Ok(Box::new(FaultyModel { mode })),
        }
    }
}

impl Model for FaultyModel {
    fn input_gradients(&mut self, request: &GradRequest<'_>) -> Result<GradOutput> {
        let (rows, width) = (request.input.rows(), request.input.row_len());
        match self.mode {
            Mode::ErrorInGradients => {
                return Err(Error::backend(
                    "faulty",
                    "gradients are not available today",
                ))
            }
            Mode::PanicInGradients => panic!("faulty plugin panics inside input_gradients"),
            _ => {}
        }
        let c = width.clamp(1, 3);
        let mut logits = Vec::with_capacity(rows * c);
        for row in request.input.data().chunks_exact(width.max(1)) {
            logits.extend_from_slice(&row[..c]);
        }
        let classes: Vec<u32> = match request.classes {
            Classes::Given(g) => g.to_vec(),
            Classes::Argmax => vec![0; rows],
        };
        let mut gradient = vec![0.0f32; rows * width];
        for (r, &k) in classes.iter().enumerate() {
            if (k as usize) < c {
                gradient[r * width + k as usize] = 1.0;
            }
        }
        if self.mode == Mode::ShortGradient {
            gradient.pop();
        }
        Ok(GradOutput {
            logits,
            num_classes: c,
            gradient: gradient.into(),
            gradient_shape: None,
            classes,
        })
    }
}

impl PluginBackend for Faulty {
    fn describe() -> BackendInfo {
        BackendInfo {
            name: "faulty".into(),
            version: "0.0.0".into(),
            extensions: vec!["ckpt".into()],
            devices: vec!["cpu".into()],
        }
    }

    fn create(options: &str) -> Result<Self> {
        let o: Options = toml::from_str(options)
            .map_err(|e| Error::Config(format!("faulty options: {}", e.message())))?;
        if o.mode == Mode::PanicOnCreate {
            panic!("faulty plugin panics in create");
        }
        Ok(Faulty { mode: o.mode })
    }

    fn self_test() -> Result<String> {
        Err(Error::backend("faulty", "self-test fails on purpose"))
    }
}

vog_plugin::export_backend!(Faulty);
