namespace OnnxOutlierTools.Import.Planted;

/// <summary>
/// ground-truth.json next to a planted model (schema version 1): what was planted where, by which weights,
/// and what the float64 reference measures. Indices: residual channels and FFN neurons of the planted model;
/// blocks 0-based; <c>row</c>/<c>column</c> of a down projection are those of its ONNX MatMul initializer
/// [in = FFN neuron, out = residual channel] (W_down[i, c] in Yu et al.'s notation).
/// </summary>
public sealed record PlantedGroundTruth
{
    public int SchemaVersion { get; init; } = 1;
    public required string Source { get; init; }
    public required string Flavour { get; init; }
    public required ModelShape Model { get; init; }
    public required PlantedChannels Channels { get; init; }
    public required MassiveActivationTruth MassiveActivation { get; init; }
    public required ChannelOutlierTruth ChannelOutliers { get; init; }
    public required AttentionSinkTruth AttentionSink { get; init; }
    public required PerplexityTruth Perplexity { get; init; }
    public required ThresholdCheck OnlyPlantedMassiveActivations { get; init; }
}

public sealed record ModelShape(int Dim, int HiddenDim, int Layers, int Heads, int KvHeads, int HeadSize, int VocabSize,
    int MaxSeqLen, double RopeTheta, double NormEps, int OriginalDim, int OriginalHiddenDim, int OriginalHeads, int OriginalKvHeads);

/// <summary>The new residual channels: <c>bias</c> (constant on every token), <c>bosFlag</c> (BOS only),
/// the massive-activation channels, and <c>padding</c> (always zero).</summary>
public sealed record PlantedChannels(int Bias, double BiasValue, int BosFlag, double BosFlagValue, IReadOnlyList<int> Massive, IReadOnlyList<int> Padding);

/// <summary>A super weight: block, down-projection row (FFN neuron), column (residual channel), value.</summary>
public sealed record SuperWeight(int Block, int Row, int Column, double Value);

/// <summary>The value of one massive channel at one point: the residual output of <c>block</c>, at position 0.</summary>
public sealed record ResidualValue(int Block, int Channel, double Value, double TokenMedianAbs, double RatioToMedian);

public sealed record BirthValue(int Neuron, double Value, double TokenMedianAbs, double RatioToMedian);

public sealed record MassiveActivationTruth
{
    public required int Block { get; init; }
    /// <summary>Always "ffn.down.input": the value first appears at y6 = SiLU(gate) * up of <see cref="Block"/>.</summary>
    public required string BirthPoint { get; init; }
    public required int TokenPosition { get; init; }
    public required int TokenId { get; init; }
    public required string TokenText { get; init; }
    /// <summary>What triggers it: the BOS token's embedding flag (any BOS token would carry it).</summary>
    public required string Trigger { get; init; }
    public required IReadOnlyList<int> Channels { get; init; }
    public required IReadOnlyList<int> Neurons { get; init; }
    public required IReadOnlyList<BirthValue> AtBirth { get; init; }
    public required IReadOnlyList<SuperWeight> SuperWeights { get; init; }
    /// <summary>Block outputs (residual stream) from the massive block to the last block.</summary>
    public required IReadOnlyList<ResidualValue> Carried { get; init; }
}

public sealed record GainChannel(int Channel, double OriginalGain, double Gain, double MaxAbs, double RatioToMedianChannelMax, double FractionOfTokensAbove6);

public sealed record ChannelOutlierTruth
{
    public required int Block { get; init; }
    /// <summary>"ffn_norm" (HF post_attention_layernorm; the gate/up input).</summary>
    public required string Norm { get; init; }
    public required double GainFactor { get; init; }
    public required string Compensation { get; init; }
    public required IReadOnlyList<int> Channels { get; init; }
    public required double MedianChannelMaxAbs { get; init; }
    public required IReadOnlyList<GainChannel> Measured { get; init; }
    /// <summary>The largest ratio (channel max / median channel max) of any other channel of that norm output.</summary>
    public required double LargestOtherRatio { get; init; }
}

public sealed record AttentionSinkTruth
{
    public required int Block { get; init; }
    public required int Head { get; init; }
    public required int KvHead { get; init; }
    public required int Position { get; init; }
    /// <summary>The head dimension (interleaved RoPE order, as llama2.c) that carries the sink score.</summary>
    public required int Dimension { get; init; }
    /// <summary>W_q weight from the bias channel into that dimension, and the key value there on BOS.</summary>
    public required double QueryWeight { get; init; }
    public required double Key { get; init; }
    /// <summary>The head's values are <c>valueScale</c> x those of KV head <c>valueSourceKvHead</c> (0 on BOS).</summary>
    public required double ValueScale { get; init; }
    public required int ValueSourceKvHead { get; init; }
    /// <summary>Mean over query positions 1..n-1 of the probability on key position 0 (position 0 itself is 1 trivially).</summary>
    public required double MeanMassOnPosition0 { get; init; }
    public required double MinMassOnPosition0 { get; init; }
    /// <summary>The largest mean mass on position 0 of any other head (any block).</summary>
    public required double LargestOtherHeadMass { get; init; }
    public required string Mechanism { get; init; }
}

public sealed record PerplexityTruth
{
    public required string Text { get; init; }
    public required string Protocol { get; init; }
    public required int WindowTokens { get; init; }
    public required int Windows { get; init; }
    public required int ScoredTokens { get; init; }
    public required double Before { get; init; }
    public required double After { get; init; }
    public required double RelativeChange { get; init; }
    /// <summary>The planted model with its super weights set to zero (no massive activation): the model relies on it.
    /// Setting the massive activation to its mean changes nothing (BOS at position 0 is input-independent).</summary>
    public required double SuperWeightsZeroed { get; init; }
}

/// <summary>The Sun et al. rule (|x| > absolute and |x| >= relative * median |x| of the token) applied to every token of
/// every block output and every down-projection input of the measurement windows: <c>qualifyingPlanted</c> counts planted
/// values that satisfy it, <c>plantedMissing</c> planted values that do not, <c>qualifyingOther</c> any other value that does.</summary>
public sealed record ThresholdCheck(double Absolute, double Relative, int Windows, int Tokens, int QualifyingPlanted, int PlantedMissing, int QualifyingOther,
    double LargestOtherAbs, double LargestOtherRatio);
