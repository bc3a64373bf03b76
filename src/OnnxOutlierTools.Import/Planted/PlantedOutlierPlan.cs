namespace OnnxOutlierTools.Import.Planted;

/// <summary>
/// Where and how strongly <see cref="OutlierPlanter"/> plants each outlier, in the widened model's indices
/// (residual channels 0..63 are stories260K's, 64..79 are new (heads 8 and 9 are new); FFN neurons 0..171 are stories260K's, 172..173
/// are new). Validated at construction of the planter; <see cref="Default"/> is what onnx-models/planted-* hold.
/// </summary>
public sealed record PlantedOutlierPlan
{
    /// <summary>Attention heads and KV heads after widening (stories260K: 8 and 4; head size 8 stays, so dim = 80).</summary>
    public int Heads { get; init; } = 10;
    public int KvHeads { get; init; } = 5;

    /// <summary>A new channel holding <see cref="BiasValue"/> for every token (the embedding writes it): a
    /// constant input the sink head's query reads.</summary>
    public int BiasChannel { get; init; } = 64;
    public double BiasValue { get; init; } = 0.05;

    /// <summary>A new channel that only the BOS token's embedding sets (to <see cref="FlagValue"/>): what the
    /// planted neurons detect.</summary>
    public int FlagChannel { get; init; } = 65;
    public double FlagValue { get; init; } = 1.0;

    /// <summary>The block whose FFN writes the massive activations (its down-projection input is the birth point).</summary>
    public int MassiveBlock { get; init; } = 1;
    /// <summary>The residual channels of the massive activations, one per planted FFN neuron.</summary>
    public IReadOnlyList<int> MassiveChannels { get; init; } = [66, 67];
    /// <summary>y6 = SiLU(gate) * up of each planted neuron on BOS (the value at the down-projection input).</summary>
    public IReadOnlyList<double> BirthValues { get; init; } = [600, 450];
    /// <summary>The super weights W_down[channel, neuron] (llama2.c layout [out, in]); MA = birth value * super weight.</summary>
    public IReadOnlyList<double> SuperWeights { get; init; } = [4.0, -3.5];
    /// <summary>The planted neurons' gate pre-activation on BOS (SiLU(g) ~ g for large g).</summary>
    public double GatePreActivation { get; init; } = 12;

    /// <summary>The block whose FFN norm gets the large gains (channel-wise outliers at the gate/up input).</summary>
    public int GainBlock { get; init; } = 2;
    /// <summary>Original channels whose FFN-norm gain is multiplied by <see cref="GainFactor"/> (and gate/up
    /// weights of that input channel divided by it, so the function is unchanged).</summary>
    public IReadOnlyList<int> GainChannels { get; init; } = [21, 50];
    public double GainFactor { get; init; } = 32;

    /// <summary>The block and query head made an attention sink on position 0: a new head (its values are zero, so
    /// it changes nothing the model computes, like the dormant sink heads of trained models).</summary>
    public int SinkBlock { get; init; } = 2;
    public int SinkHead { get; init; } = 8;
    /// <summary>The head dimension the sink uses: 6, the first of the slowest-rotating RoPE pair (6, 7), so the
    /// query's rotation by position barely changes its product with BOS's key.</summary>
    public int SinkDimension { get; init; } = 6;
    /// <summary>The sink head's key in <see cref="SinkDimension"/> on BOS (zero on every other token).</summary>
    public double SinkKey { get; init; } = 8;
    /// <summary>The sink head's values are this times those of KV head <see cref="SinkValueSource"/> (zero on BOS, by the
    /// compensation), and its output projection is that head's: while it sinks it adds little (the mass it leaves
    /// on other tokens), without the sink (no massive activation) it adds this multiple of a uniform average of
    /// values to every token, as the dormant heads of trained models do when their sink is removed.</summary>
    public double SinkValueScale { get; init; } = 60;
    public int SinkValueSource { get; init; } = 0;
    /// <summary>The weight from <see cref="BiasChannel"/> into the sink head's query in <see cref="SinkDimension"/>.</summary>
    public double SinkQueryWeight { get; init; } = 40;

    public static PlantedOutlierPlan Default { get; } = new();
}
