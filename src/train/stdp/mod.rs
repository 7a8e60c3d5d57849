//! Unsupervised layerwise STDP (Section III.B.3 and IV of the paper): the spiking conv layers
//! learn with Eq. 5 ([`rule`]) under competition ([`competition`]: winner-take-all across
//! maps, uniform threshold adaptation, dropout), one layer after the other on the
//! step-by-step runtime ([`schedule`]: traces and updates live in an observer). A BackRes
//! layer makes k × n updates per presentation. Then [`classifier`]: the layers behind the
//! SNN→ANN boundary train with backprop on the spike rates at T; [`run`]: `snnc train
//! --method stdp` (checkpoint, report with EE_Conv / EE_Full, [`kernels`]: `OUT/kernels.svg`).
//!
//! Owner: the STDP helper. Invariants: settings are validated before a run (bad values are
//! errors, never panics); STDP changes only the weights and thresholds of the spiking conv
//! layers; every random draw comes from the run's seed.

pub mod classifier;
pub mod competition;
pub mod kernels;
pub mod method;
pub mod rule;
pub mod run;
pub mod schedule;

pub use competition::ThresholdAdaptation;
pub use rule::StdpParams;
pub use schedule::{stdp_layers, train_layerwise, LayerReport, StdpLayer, StdpObserver};

/// Everything the STDP phase needs besides the model and images.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StdpConfig {
    /// Eq. 5's η, τ, offset and the weight bounds.
    pub params: StdpParams,
    pub adaptation: ThresholdAdaptation,
    /// Winner-take-all across feature maps at a position (lateral inhibition of learning).
    pub wta: bool,
    /// Probability that a kernel sits out one step's update.
    pub dropout: f32,
    /// Training images presented per layer (`--stdp-images`; the paper: 5,000 of CIFAR-10).
    pub images: usize,
    /// Images per mini-batch.
    pub batch: usize,
    /// T, time steps per presentation.
    pub timesteps: usize,
    pub seed: u64,
    /// Show a progress bar per layer (on a terminal).
    pub progress: bool,
}

impl Default for StdpConfig {
    /// WTA on and dropout 0.1 (competition as in [15], [25]); 2,000 images (the
    /// Fashion-MNIST target of issue 9); mini-batches of 16 (updates averaged over 16 images
    /// × all positions are smooth enough at η = 0.01); T = STDP's default T,
    /// [`crate::ir::defaults::timesteps`]`(Stdp)` = 100 (a run always replaces it with its
    /// own T: flag, else the file's `timesteps`, else that same default).
    fn default() -> Self {
        StdpConfig {
            params: StdpParams::default(),
            adaptation: ThresholdAdaptation::default(),
            wta: true,
            dropout: 0.1,
            images: 2000,
            batch: 16,
            timesteps: crate::train::defaults::STDP_TIMESTEPS,
            seed: 0,
            progress: false,
        }
    }
}

impl StdpConfig {
    /// These settings with the constants a network file writes (`stdp(...)`,
    /// [`crate::ir::StdpSettings`]) on top; unwritten ones keep their value here.
    pub fn with_network(mut self, s: &crate::ir::StdpSettings) -> Self {
        let p = &mut self.params;
        p.eta = s.eta.unwrap_or(p.eta);
        p.tau = s.tau.unwrap_or(p.tau);
        p.offset = s.offset.unwrap_or(p.offset);
        p.w_min = s.w_min.unwrap_or(p.w_min);
        p.w_max = s.w_max.unwrap_or(p.w_max);
        let a = &mut self.adaptation;
        a.target_rate = s.target_rate.unwrap_or(a.target_rate);
        a.gain = s.gain.unwrap_or(a.gain);
        a.min_threshold = s.min_threshold.unwrap_or(a.min_threshold);
        self.wta = s.wta.unwrap_or(self.wta);
        self.dropout = s.dropout.unwrap_or(self.dropout);
        self.batch = s.batch.map_or(self.batch, |b| b as usize);
        self.images = s.images.map_or(self.images, |n| n as usize);
        self
    }

    /// The STDP settings of a run, by precedence: `images_flag` (`--stdp-images`) >
    /// `toml` (the keys `[train.stdp]` writes) > the network file's `stdp(...)` > the
    /// defaults ([`StdpConfig::default`]). T, seed and progress are the run's (set by the
    /// method), not decided here.
    ///
    /// Errors: a message when the merged table does not describe a `StdpConfig` (a wrong
    /// type); the ranges are checked later by [`StdpConfig::validate`].
    pub fn resolve(
        net: &crate::ir::StdpSettings,
        toml: Option<&StdpToml>,
        images_flag: Option<usize>,
    ) -> Result<StdpConfig, String> {
        let base = StdpConfig::default().with_network(net);
        let mut cfg = match toml {
            Some(t) => t.over(&base)?,
            None => base,
        };
        if let Some(n) = images_flag {
            cfg.images = n;
        }
        Ok(cfg)
    }

    /// Checks every setting (see [`StdpParams::validate`], [`ThresholdAdaptation::validate`]),
    /// 0 ≤ dropout < 1, batch ≥ 1 and T ≥ 1.
    pub fn validate(&self) -> Result<(), String> {
        self.params.validate()?;
        self.adaptation.validate()?;
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("STDP dropout {} is outside [0, 1)", self.dropout));
        }
        if self.batch == 0 || self.timesteps == 0 {
            return Err("STDP needs a batch and T of at least 1".into());
        }
        Ok(())
    }
}

/// The `[train.stdp]` table of a `--config` file exactly as written: only the keys it
/// gives override (see [`StdpConfig::resolve`]), so that a network file's `stdp(...)`
/// applies to the others. Same fields as [`StdpConfig`] (`params = { eta = .. }`,
/// `adaptation = { gain = .. }`, `wta`, `dropout`, `images`, `batch`); a table that is not
/// a valid (partial) `StdpConfig` (unknown key, wrong type) is refused when the file is
/// read.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(transparent)]
pub struct StdpToml(serde_json::Value);

impl<'de> serde::Deserialize<'de> for StdpToml {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        // Check keys and types now (over the defaults), so a typo fails at load time.
        StdpToml(v.clone())
            .over(&StdpConfig::default())
            .map_err(D::Error::custom)?;
        Ok(StdpToml(v))
    }
}

impl StdpToml {
    /// `base` with the keys of this table on top (nested tables merge key by key).
    pub fn over(&self, base: &StdpConfig) -> Result<StdpConfig, String> {
        fn merge(into: &mut serde_json::Value, top: &serde_json::Value) {
            match (into, top) {
                (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                    for (k, v) in b {
                        match a.get_mut(k) {
                            Some(slot) => merge(slot, v),
                            None => {
                                a.insert(k.clone(), v.clone());
                            }
                        }
                    }
                }
                (slot, v) => *slot = v.clone(),
            }
        }
        let mut v = serde_json::to_value(base).map_err(|e| e.to_string())?;
        merge(&mut v, &self.0);
        serde_json::from_value(v).map_err(|e| format!("[train.stdp]: {e}"))
    }
}

/// What a whole STDP run produced.
#[derive(Debug, Clone)]
pub struct StdpRun {
    /// The STDP phase, per layer.
    pub layers: Vec<LayerReport>,
    /// The classifier phase (AGD on the features): accuracy per epoch on the test features.
    pub classifier: crate::train::report::Report,
    /// Per threshold slot: the spike rate over the test images at T.
    pub test_rates: Vec<f64>,
    /// Wall time per phase, seconds: `stdp` (all layers), `features` (the spike rates of
    /// the training and test images at T), `classifier` (its training and testing).
    pub seconds: PhaseSeconds,
}

/// Wall time of the phases of one STDP run, seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct PhaseSeconds {
    pub stdp: f64,
    pub features: f64,
    /// Images whose features were computed per second (training plus test images).
    pub feature_images_per_s: f64,
    pub classifier: f64,
}

/// The whole method: layerwise STDP on `data.train` (cfg.images images), then the
/// classifier behind the SNN→ANN boundary trained with backprop (`train_cfg`, method ANN)
/// on the spike rates at T of all of `data.train`, tested on those of `data.test`.
/// The classifier's test accuracy is the accuracy of the whole SNN at T (same run).
pub fn train(
    model: &mut crate::backend::candle::model::Model,
    data: &crate::data::Dataset,
    cfg: &StdpConfig,
    train_cfg: &crate::train::driver::TrainConfig,
) -> Result<StdpRun, String> {
    use crate::backend::candle::model::Model;
    use crate::train::conversion::SplitImages;
    let train = SplitImages::new(&data.train, data.shape);
    let test = SplitImages::new(&data.test, data.shape);
    let clock = std::time::Instant::now();
    let layers = train_layerwise(model, &train, cfg).map_err(|e| e.to_string())?;
    let mut seconds = PhaseSeconds {
        stdp: clock.elapsed().as_secs_f64(),
        ..Default::default()
    };
    let clock = std::time::Instant::now();
    let boundary = classifier::classifier_boundary(model.network()).map_err(|e| e.to_string())?;
    let cls_net =
        classifier::classifier_network(model.network(), boundary).map_err(|e| e.to_string())?;
    let shape = cls_net
        .settings
        .input
        .ok_or("the classifier has no input shape")?;
    let dims = [shape.c, shape.h, shape.w].map(|d| usize::try_from(d).unwrap_or(usize::MAX));
    // Train and test features draw their Poisson spikes from different streams.
    let feats = |imgs: &SplitImages, stream: u64| {
        classifier::features(
            model,
            imgs,
            imgs.split.len(),
            cfg.timesteps,
            cfg.batch.max(32),
            cfg.seed,
            stream,
        )
        .map_err(|e| e.to_string())
    };
    let (train_feats, _) = feats(&train, 0)?;
    let (test_feats, test_rates) = feats(&test, 1)?;
    seconds.features = clock.elapsed().as_secs_f64();
    let featured = train_feats.len() + test_feats.len();
    seconds.feature_images_per_s = featured as f64 / seconds.features.max(1e-9);
    if cfg.progress {
        eprintln!(
            "features: spike rates of {featured} images at T = {} in {:.1} s ({:.1} images/s)",
            cfg.timesteps, seconds.features, seconds.feature_images_per_s
        );
    }
    let clock = std::time::Instant::now();
    let fdata = crate::data::Dataset {
        name: format!("{} STDP features", data.name),
        shape: dims,
        classes: data.classes,
        train: train_feats,
        test: test_feats,
    };
    let mut cls =
        Model::new(&cls_net, model.device(), train_cfg.seed).map_err(|e| e.to_string())?;
    let names: Vec<String> = cls_net.weights.iter().map(|w| w.name.clone()).collect();
    // Start from the full model's classifier weights (the same seeded draw).
    classifier::copy_weights(model, &cls, &names).map_err(|e| e.to_string())?;
    let mut tc = train_cfg.clone();
    tc.method = crate::train::method::ANN;
    let report = crate::train::driver::train(&mut cls, &fdata, &tc).map_err(|e| e.to_string())?;
    classifier::copy_weights(&cls, model, &names).map_err(|e| e.to_string())?;
    seconds.classifier = clock.elapsed().as_secs_f64();
    Ok(StdpRun {
        layers,
        classifier: report,
        test_rates,
        seconds,
    })
}
