using OnnxOutlierTools.Probes;

namespace OnnxOutlierTools.Analysis;

/// <summary>Every threshold of the analysis (recorded in the result, so a report can be reproduced). Defaults follow
/// ../shared/docs/SCIENCE.md; where the literature gives no number, the choice is explained on the property.</summary>
public sealed record AnalysisSettings
{
    // --- massive activations ---

    /// <summary>Sun et al. 2024: |x| must exceed this (absolute rule).</summary>
    public double MassiveAbsolute { get; init; } = 100;

    /// <summary>Sun et al. 2024: |x| must be at least this times the token's median |x| (absolute rule).</summary>
    public double MassiveAbsoluteRatio { get; init; } = 1000;

    /// <summary>The relative rule: |x| at least this times the token's median |x|, whatever its absolute size (small
    /// models; MiniLM's channel 99 is ~500x). 100 is far above what a Gaussian hidden state reaches (a few x at the widths
    /// here) and above stories260K's ~14x, which has none. Set it very high (1e30) to use the absolute rule only (the settings are written as JSON, which has no infinity).</summary>
    public double MassiveRelativeRatio { get; init; } = 100;

    /// <summary>The relative rule also needs |x| at least this: a ratio over a near-zero median (a sparse hidden state)
    /// is not a massive activation.</summary>
    public double MassiveRelativeMinAbs { get; init; } = 1;

    /// <summary>The probe kinds scanned for massive activations: the residual stream (post-norm models keep them in the
    /// residual sums).</summary>
    public IReadOnlyList<ProbeKind> MassiveKinds { get; init; } = [ProbeKind.Embedding, ProbeKind.Residual, ProbeKind.ResidualSum];

    /// <summary>A massive activation emerges at the first stream point (graph order) where its |x| reaches this fraction
    /// of its peak: earlier, smaller hits are precursors (a post-norm model's normalized copy, a value that only the
    /// relative rule flags), listed in the hits but not where it is born. Sun et al.: they appear abruptly in one block.</summary>
    public double EmergenceFraction { get; init; } = 0.5;

    /// <summary>How many down-projection terms y6_i * W_down[i, c] are listed per massive activation.</summary>
    public int DownProjectionTerms { get; init; } = 5;

    /// <summary>Terms whose share of sum_i |y6_i W_down[i, c]| is below this are not listed (the largest always is): they
    /// do not write the massive activation.</summary>
    public double MinTermShare { get; init; } = 0.01;

    // --- fp16 range ---

    /// <summary>The fp16 maximum.</summary>
    public double Fp16Max { get; init; } = 65504;

    /// <summary>A point within this factor of <see cref="Fp16Max"/> is reported (the factor of 4).</summary>
    public double Fp16Margin { get; init; } = 4;

    // --- channel-wise outliers ---

    /// <summary>The linear inputs scanned for channel-wise outliers.</summary>
    public IReadOnlyList<ProbeKind> ChannelKinds { get; init; } =
        [ProbeKind.AttentionInput, ProbeKind.FfnInput, ProbeKind.OutputProjectionInput, ProbeKind.DownInput];

    /// <summary>A channel whose max |x| is at least this times the median channel's max |x| is an outlier (SCIENCE.md:
    /// channel-wise outliers are typically 10-100x the typical channel).</summary>
    public double ChannelRatio { get; init; } = 10;

    /// <summary>At most this many outliers are listed per point (largest ratio first); the rest are counted in a note.</summary>
    public int MaxChannelOutliersPerPoint { get; init; } = 16;

    /// <summary>A channel whose kurtosis E[x^4]/E[x^2]^2 is at most this is persistent, above it token-specific. Scale-free
    /// (it works for models whose values never cross the probes' |x| threshold): a value present on a fraction f of the
    /// tokens gives a kurtosis of about 1/f, so 10 means "large on more than about a tenth of the tokens". The fraction of
    /// tokens above the threshold (LLM.int8()'s criterion) is reported beside it.</summary>
    public double PersistentMaxKurtosis { get; init; } = 10;

    // --- norm gains ---

    /// <summary>A gain entry whose |effective gain| is at least this times the norm's median |gain| is an outlier. Trained
    /// RMSNorm/LayerNorm gains mostly lie within a factor of 2-3 of their median; the gains that make channel-wise outliers
    /// are an order of magnitude above, so 5 separates them without flagging the ordinary spread.</summary>
    public double NormGainRatio { get; init; } = 5;

    // --- outlier-triggering channels in W_q ---

    /// <summary>An input channel j is a candidate when max|X_j| * ||W_q[j, :]|| is at least this times the median channel's.</summary>
    public double TriggeringRatio { get; init; } = 10;

    /// <summary>At most this many candidates are listed per query projection (largest score first).</summary>
    public int MaxTriggeringPerLayer { get; init; } = 3;

    // --- attention sinks ---

    /// <summary>A head whose mean probability mass on one key position is at least this is a sink.</summary>
    public double SinkMass { get; init; } = 0.5;

    /// <summary>Checks every value (one clear message for the first bad one).</summary>
    public void Validate()
    {
        Positive(MassiveAbsolute, nameof(MassiveAbsolute));
        Positive(MassiveAbsoluteRatio, nameof(MassiveAbsoluteRatio));
        Positive(MassiveRelativeRatio, nameof(MassiveRelativeRatio));
        if (!(MassiveRelativeMinAbs >= 0)) throw new ArgumentException($"{nameof(MassiveRelativeMinAbs)} must be >= 0, not {MassiveRelativeMinAbs}");
        if (!(EmergenceFraction is > 0 and <= 1)) throw new ArgumentException($"{nameof(EmergenceFraction)} must be in (0, 1], not {EmergenceFraction}");
        if (DownProjectionTerms < 1) throw new ArgumentException($"{nameof(DownProjectionTerms)} must be >= 1, not {DownProjectionTerms}");
        if (!(MinTermShare is >= 0 and <= 1)) throw new ArgumentException($"{nameof(MinTermShare)} must be in [0, 1], not {MinTermShare}");
        Positive(Fp16Max, nameof(Fp16Max));
        if (!(Fp16Margin >= 1)) throw new ArgumentException($"{nameof(Fp16Margin)} must be >= 1, not {Fp16Margin}");
        Positive(ChannelRatio, nameof(ChannelRatio));
        if (MaxChannelOutliersPerPoint < 1) throw new ArgumentException($"{nameof(MaxChannelOutliersPerPoint)} must be >= 1, not {MaxChannelOutliersPerPoint}");
        Positive(PersistentMaxKurtosis, nameof(PersistentMaxKurtosis));
        Positive(NormGainRatio, nameof(NormGainRatio));
        Positive(TriggeringRatio, nameof(TriggeringRatio));
        if (MaxTriggeringPerLayer < 1) throw new ArgumentException($"{nameof(MaxTriggeringPerLayer)} must be >= 1, not {MaxTriggeringPerLayer}");
        if (!(SinkMass is > 0 and <= 1)) throw new ArgumentException($"{nameof(SinkMass)} must be in (0, 1], not {SinkMass}");
    }

    private static void Positive(double value, string name)
    {
        if (!(value > 0)) throw new ArgumentException($"{name} must be > 0, not {value}");
    }
}
