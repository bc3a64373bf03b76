using OnnxOutlierTools.Probes;

namespace OnnxOutlierTools.Analysis;

// The findings of one analysis: plain records with named init properties, so report.json (written with
// JsonOutput.Options: camelCase, enums as strings) is this object graph as it stands. Every finding names the
// probe point it was read at (id, kind, block) and the values it was decided on, and the settings it was
// decided with are in AnalysisResult.Settings, so a finding can be checked by hand against stats.json.

/// <summary>Everything one analysis found, with the settings and the corpus it was computed from.</summary>
public sealed record AnalysisResult
{
    public const int CurrentSchemaVersion = 1;
    public int SchemaVersion { get; init; } = CurrentSchemaVersion;
    public required AnalysisSettings Settings { get; init; }
    public required CorpusSummary Corpus { get; init; }
    /// <summary>Massive activations, one per channel (a channel carried by the residual stream through many blocks is one
    /// finding listing them), largest first.</summary>
    public IReadOnlyList<MassiveActivation> MassiveActivations { get; init; } = [];
    /// <summary>The tokens that carry massive activations (for prefix / sink mitigations), most frequent first.</summary>
    public IReadOnlyList<MassiveActivationToken> MassiveActivationTokens { get; init; } = [];
    /// <summary>Probe points whose |x| exceeds, or comes within <see cref="AnalysisSettings.Fp16Margin"/> of, the fp16 maximum.</summary>
    public IReadOnlyList<Fp16RangeFinding> Fp16Range { get; init; } = [];
    /// <summary>Channel-wise outliers at the inputs of linear layers, per point, largest ratio first.</summary>
    public IReadOnlyList<ChannelOutlier> ChannelOutliers { get; init; } = [];
    /// <summary>Norm gain entries far above their norm's median |gain|, with the outliers at that norm's output.</summary>
    public IReadOnlyList<NormGainOutlier> NormGainOutliers { get; init; } = [];
    /// <summary>Candidate outlier-triggering input channels of the query projections.</summary>
    public IReadOnlyList<OutlierTriggeringChannel> OutlierTriggeringChannels { get; init; } = [];
    /// <summary>Attention heads that put most of their probability on one position.</summary>
    public IReadOnlyList<AttentionSink> AttentionSinks { get; init; } = [];
    /// <summary>The residual stream per probe point (top-3 |x| and the median): the standard massive-activation plot.</summary>
    public IReadOnlyList<StreamProfilePoint> StreamProfile { get; init; } = [];
    /// <summary>What the analysis could not do, or did in a weaker form, and why (quantized weights, missing points, ...).</summary>
    public IReadOnlyList<AnalysisNote> Notes { get; init; } = [];
}

/// <summary>What the statistics were computed on (copied from <see cref="CalibrationStatistics"/> and its manifest).</summary>
public sealed record CorpusSummary
{
    public required string Model { get; init; }
    public required long Tokens { get; init; }
    public required int Windows { get; init; }
    /// <summary>The |x| threshold of the probes' above-threshold counts (<see cref="ProbeSettings.AboveThreshold"/>).</summary>
    public required double AboveThreshold { get; init; }
    public required int TopK { get; init; }
    public required int ProbePoints { get; init; }
}

/// <summary>A probe point as findings name it.</summary>
public sealed record PointRef(string Id, ProbeKind Kind, int? Block)
{
    public override string ToString() => Id;
}

/// <summary>A token of the corpus with its text (null when the runner had no text for the id).</summary>
public sealed record TokenInfo(int Window, int Position, int TokenId, string? Text)
{
    public static TokenInfo Of(TokenRef token, IReadOnlyDictionary<int, string> texts) =>
        new(token.Window, token.Position, token.TokenId, texts.GetValueOrDefault(token.TokenId));
}

public enum MassiveActivationRule
{
    /// <summary>Sun et al. 2024: |x| above the absolute threshold and at least the ratio threshold times the median.</summary>
    Absolute,
    /// <summary>Ratio to the median only (for small models whose absolute scale is low).</summary>
    Relative,
}

/// <summary>Where the median of a ratio came from.</summary>
public enum MedianSource
{
    /// <summary>The median |x| over the token's own hidden state (the probes' per-token median).</summary>
    Token,
    /// <summary>The token's own median was not kept; the median over the point's per-token medians stands in.</summary>
    Point,
}

/// <summary>One massive value at one probe point and token.</summary>
public sealed record MassiveActivationHit
{
    public required PointRef Point { get; init; }
    public required TokenInfo Token { get; init; }
    /// <summary>|x|.</summary>
    public required double Abs { get; init; }
    /// <summary>The signed value where the top-k list has it; null when only |x| is known (per-token max).</summary>
    public double? Value { get; init; }
    public required double Median { get; init; }
    public required MedianSource MedianSource { get; init; }
    /// <summary>|x| / median; null when the median is 0 (JSON has no infinity).</summary>
    public required double? Ratio { get; init; }
    /// <summary>The strongest rule the value meets.</summary>
    public required MassiveActivationRule Rule { get; init; }
}

/// <summary>A massive activation: one channel of the residual stream, with every point and token it was seen at, where it
/// is born and what writes it.</summary>
public sealed record MassiveActivation
{
    public required int Channel { get; init; }
    /// <summary>The strongest rule any of its hits meets.</summary>
    public required MassiveActivationRule Rule { get; init; }
    /// <summary>The largest hit.</summary>
    public required MassiveActivationHit Peak { get; init; }
    /// <summary>The blocks it spans (sorted; the embedding is not a block and shows in <see cref="Hits"/> only).</summary>
    public required IReadOnlyList<int> Blocks { get; init; }
    /// <summary>The largest hit at each point it was seen at, in graph order.</summary>
    public required IReadOnlyList<MassiveActivationHit> Hits { get; init; }
    /// <summary>Every token it was seen on (distinct window/position), largest first.</summary>
    public required IReadOnlyList<TokenInfo> Tokens { get; init; }
    /// <summary>Where it first appears and which sublayer writes it.</summary>
    public required MassiveActivationBirth Birth { get; init; }
}

public enum BirthPlace
{
    /// <summary>Already in the embedding output.</summary>
    Embedding,
    /// <summary>Written by the FFN: first present after the FFN's residual add, not before (SCIENCE.md: at the
    /// down-projection input y6, or the fc2 input of a GeLU MLP).</summary>
    Ffn,
    /// <summary>Written by the attention sublayer: already present at the block's attention residual sum.</summary>
    Attention,
    /// <summary>A parallel block (attention and FFN added together): the two cannot be told apart from the stream.</summary>
    AttentionOrFfn,
    /// <summary>The first point it was seen at has no earlier stream point in its block to compare with.</summary>
    Unknown,
}

/// <summary>The emergence block and birth point of a massive activation, and for an FFN birth the down-projection
/// input neurons and weights that write it.</summary>
public sealed record MassiveActivationBirth
{
    /// <summary>The block of <see cref="FirstPoint"/>; null when it is already in the embedding.</summary>
    public int? EmergenceBlock { get; init; }
    /// <summary>The first stream point (graph order) where it reaches <see cref="AnalysisSettings.EmergenceFraction"/> of its
    /// peak (smaller hits before it are precursors, listed in <see cref="MassiveActivation.Hits"/>).</summary>
    public required PointRef FirstPoint { get; init; }
    public required BirthPlace Place { get; init; }
    /// <summary>The token the birth was traced on (the largest hit at <see cref="FirstPoint"/>).</summary>
    public required TokenInfo Token { get; init; }
    /// <summary>The down-projection input point of the emergence block (null when not probed).</summary>
    public PointRef? DownInput { get; init; }
    /// <summary>Whether that token's down-projection input is itself massive (its max/median meets the relative rule).</summary>
    public bool? MassiveAtDownInput { get; init; }
    /// <summary>That token's largest |y6| and its neuron, where the down-input point kept the token.</summary>
    public double? DownInputMaxAbs { get; init; }
    public int? DownInputArgMax { get; init; }
    public double? DownInputRatio { get; init; }
    /// <summary>The largest terms y6_i * W_down[i, c], largest |term| first (at most
    /// <see cref="AnalysisSettings.DownProjectionTerms"/>, those below <see cref="AnalysisSettings.MinTermShare"/> left out).</summary>
    public IReadOnlyList<DownProjectionTerm> Terms { get; init; } = [];
    /// <summary>The weight of the largest term: the super weight (Yu et al. 2024); null when the terms were not computed.</summary>
    public SuperWeight? SuperWeight { get; init; }
    /// <summary>Why the terms are missing (quantized down projection, no down-input point, ...), else null.</summary>
    public string? TermsSkipped { get; init; }
}

/// <summary>Where a y6 value in a term comes from.</summary>
public enum ActivationSource
{
    /// <summary>The neuron's value on the massive-activation token (from the down-input point's top-k list).</summary>
    Token,
    /// <summary>The neuron's max |y6| over all tokens (an upper bound of its value on the token).</summary>
    ChannelMax,
}

/// <summary>One term y6_i * W_down[i, c] of the massive channel c.</summary>
public sealed record DownProjectionTerm
{
    /// <summary>Row i of W_down in [in, out] terms: the down-projection input neuron.</summary>
    public required int Neuron { get; init; }
    public required double Activation { get; init; }
    public required ActivationSource ActivationSource { get; init; }
    public required double Weight { get; init; }
    /// <summary>Activation * Weight.</summary>
    public required double Term { get; init; }
    /// <summary>|term| / sum over every neuron of |term| (neurons without a token value enter with their channel max).</summary>
    public required double Share { get; init; }
}

/// <summary>A super weight: W_down[Row, Column] in [in, out] terms (column = the massive channel).</summary>
public sealed record SuperWeight
{
    public required int Block { get; init; }
    /// <summary>The down projection's weight initializer.</summary>
    public required string Tensor { get; init; }
    /// <summary>The layout the initializer is stored in; <see cref="Row"/> and <see cref="Column"/> are [in, out] regardless.</summary>
    public required Structure.Roles.WeightLayout Layout { get; init; }
    public required int Row { get; init; }
    public required int Column { get; init; }
    public required double Weight { get; init; }
    /// <summary>The median |w| of the whole matrix.</summary>
    public required double MedianAbsWeight { get; init; }
    /// <summary>|Weight| / MedianAbsWeight.</summary>
    public required double Ratio { get; init; }
    /// <summary>Whether it is the largest |w| of the matrix.</summary>
    public required bool LargestInMatrix { get; init; }
}

public enum TokenCategory
{
    /// <summary>Position 0 of a window (BOS, [CLS], or whatever token starts the window).</summary>
    FirstPosition,
    /// <summary>Punctuation or whitespace ("." "\n" ","), elsewhere than position 0.</summary>
    Delimiter,
    Other,
}

/// <summary>A token id that carries massive activations.</summary>
public sealed record MassiveActivationToken
{
    public required int TokenId { get; init; }
    public string? Text { get; init; }
    public required TokenCategory Category { get; init; }
    /// <summary>The positions it carried them at (sorted, distinct).</summary>
    public required IReadOnlyList<int> Positions { get; init; }
    /// <summary>Distinct (window, position) occurrences carrying a massive activation (among the kept tokens).</summary>
    public required int Count { get; init; }
    /// <summary>The massive channels seen on it.</summary>
    public required IReadOnlyList<int> Channels { get; init; }
    public required double MaxAbs { get; init; }
}

public enum Fp16RangeLevel
{
    /// <summary>|x| above 65504: the value is infinite in fp16.</summary>
    Overflow,
    /// <summary>|x| within the margin of 65504: a rescale, a longer input or another prompt may overflow.</summary>
    Near,
}

/// <summary>A probe point whose largest |x| is near or above the fp16 maximum.</summary>
public sealed record Fp16RangeFinding
{
    public required PointRef Point { get; init; }
    public required Fp16RangeLevel Level { get; init; }
    public required double MaxAbs { get; init; }
    public required int Channel { get; init; }
    /// <summary>The token of the largest value (null when the point kept no top entries).</summary>
    public TokenInfo? Token { get; init; }
    /// <summary>65504 / MaxAbs (below 1: overflow).</summary>
    public required double Headroom { get; init; }
}

public enum ChannelOutlierKind
{
    /// <summary>Large on many tokens: kurtosis at most <see cref="AnalysisSettings.PersistentMaxKurtosis"/> (SmoothQuant's target).</summary>
    Persistent,
    /// <summary>A high max on few tokens: kurtosis above it (massive-activation-like, e.g. the neuron that writes one).</summary>
    TokenSpecific,
}

/// <summary>A channel-wise outlier at one probe point.</summary>
public sealed record ChannelOutlier
{
    public required PointRef Point { get; init; }
    public required int Channel { get; init; }
    /// <summary>max |x| of the channel over every token.</summary>
    public required double MaxAbs { get; init; }
    /// <summary>The median over channels of the channel max |x|.</summary>
    public required double MedianChannelMaxAbs { get; init; }
    public required double Ratio { get; init; }
    /// <summary>Fraction of tokens with |x| above <see cref="CorpusSummary.AboveThreshold"/>.</summary>
    public required double FractionAbove { get; init; }
    /// <summary>E[x^4] / E[x^2]^2 of the channel.</summary>
    public required double Kurtosis { get; init; }
    public required double Mean { get; init; }
    public required double Rms { get; init; }
    public required ChannelOutlierKind Kind { get; init; }
    /// <summary>The weights of the linears that read this point (the manifest's ReadBy).</summary>
    public IReadOnlyList<string> ReadBy { get; init; } = [];
}

/// <summary>A norm gain entry far above the norm's median |gain|, and what the norm's output shows in that channel.</summary>
public sealed record NormGainOutlier
{
    /// <summary>The block; null for the final norm.</summary>
    public int? Block { get; init; }
    /// <summary>The norm's place (<c>preAttention</c>, <c>preFfn</c>, <c>afterFfnResidual</c>, ..., <c>final</c>).</summary>
    public required string Norm { get; init; }
    public required string GainTensor { get; init; }
    public required Structure.Roles.NormGainForm GainForm { get; init; }
    public required int Channel { get; init; }
    /// <summary>The initializer's value.</summary>
    public required double Gain { get; init; }
    /// <summary>The gain the norm multiplies by (1 + gain for Gemma's form).</summary>
    public required double EffectiveGain { get; init; }
    public required double MedianAbsGain { get; init; }
    /// <summary>|EffectiveGain| / MedianAbsGain.</summary>
    public required double Ratio { get; init; }
    /// <summary>The probe point at the norm's output (null when not probed).</summary>
    public PointRef? OutputPoint { get; init; }
    public double? OutputMaxAbs { get; init; }
    public double? OutputRatio { get; init; }
    /// <summary>Whether the channel is a channel-wise outlier at the output point (the overlap).</summary>
    public bool? OutputOutlier { get; init; }
}

/// <summary>A candidate outlier-triggering channel of a query projection: input channel j whose
/// max|X_j| * ||W_q[j, :]|| dominates the projection's output magnitude.</summary>
public sealed record OutlierTriggeringChannel
{
    public required int Block { get; init; }
    public required string Weight { get; init; }
    /// <summary>True when only the query columns of a packed QKV weight were used; false when the whole weight was
    /// (q, k and v together: the packing could not be split).</summary>
    public required bool QuerySlice { get; init; }
    public required PointRef InputPoint { get; init; }
    public required int Channel { get; init; }
    public required double InputMaxAbs { get; init; }
    /// <summary>||W_q[j, :]||_2 over the query columns.</summary>
    public required double RowNorm { get; init; }
    public required double Score { get; init; }
    /// <summary>Score / sum of every channel's score.</summary>
    public required double Share { get; init; }
    /// <summary>Score / the median channel's score.</summary>
    public required double RatioToMedian { get; init; }
}

/// <summary>A head whose mean probability mass on one key position exceeds the threshold.</summary>
public sealed record AttentionSink
{
    public required PointRef Point { get; init; }
    public required int Head { get; init; }
    public required int Position { get; init; }
    public required double Mass { get; init; }
    /// <summary>The tokens seen at that position among the kept tokens, most frequent first.</summary>
    public required IReadOnlyList<PositionToken> Tokens { get; init; }
    /// <summary>Whether a massive activation was found at that position.</summary>
    public required bool CarriesMassiveActivation { get; init; }
}

public sealed record PositionToken(int TokenId, string? Text, int Count);

/// <summary>One residual-stream point of the massive-activation plot.</summary>
public sealed record StreamProfilePoint
{
    public required PointRef Point { get; init; }
    /// <summary>The three largest |x| (fewer when fewer were kept), descending.</summary>
    public required IReadOnlyList<double> Top { get; init; }
    /// <summary>The median over tokens of each token's median |x|.</summary>
    public required double Median { get; init; }
}

public enum NoteKind
{
    /// <summary>A weight-based analysis was skipped for a quantized linear.</summary>
    QuantizedWeight,
    /// <summary>A point the analysis needs was not probed.</summary>
    MissingPoint,
    /// <summary>A weight could not be read (not an initializer, unsupported type, unexpected shape).</summary>
    UnreadableWeight,
    /// <summary>The analysis ran in a weaker form (e.g. a packed QKV weight that could not be split).</summary>
    Approximation,
    /// <summary>A fact worth stating about how a statistic was computed.</summary>
    Info,
}

public sealed record AnalysisNote(NoteKind Kind, string Subject, string Message);
