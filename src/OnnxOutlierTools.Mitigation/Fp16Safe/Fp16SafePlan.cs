using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Mitigation.Fp16Safe;

/// <summary>The fp16 range the rescale aims for: every measured |x| at a rescaled point ends below
/// <see cref="Fp16Max"/> / <see cref="Margin"/>, and a point is acted on when its |x| reaches that (the analysis's
/// fp16-range rule: beyond, or within a factor of <see cref="Margin"/> of, the fp16 maximum).</summary>
public sealed record Fp16SafeSettings
{
    public double Fp16Max { get; init; } = 65504;
    /// <summary>Headroom factor (default 4): other prompts, longer inputs or a later rescale must not overflow either.</summary>
    public double Margin { get; init; } = 4;

    public double Limit => Fp16Max / Margin;

    public void Validate()
    {
        if (!(Fp16Max > 0) || !double.IsFinite(Fp16Max)) throw new ArgumentException($"{nameof(Fp16Max)} must be finite and positive, not {Fp16Max}");
        if (!(Margin >= 1) || !double.IsFinite(Margin)) throw new ArgumentException($"{nameof(Margin)} must be at least 1, not {Margin}");
    }
}

/// <summary>One down-projection input neuron divided by 2^<see cref="Exponent"/> (up column / 2^k, down row * 2^k).</summary>
public sealed record RescaledNeuron(int Neuron, double MaxAbs, int Exponent)
{
    public double MaxAbsAfter => MaxAbs * Math.ScaleB(1, -Exponent);
}

/// <summary>An up -> down fold of one block: the neurons of y6 = act(gate) * up that reach the limit.</summary>
public sealed record UpDownRescale(int Block, string Point, FfnRole Ffn, IReadOnlyList<RescaledNeuron> Neurons)
{
    public double MaxAbsBefore => Neurons.Max(n => n.MaxAbs);
    public double MaxAbsAfter => Neurons.Max(n => n.MaxAbsAfter);
}

/// <summary>The residual stream divided by 2^<see cref="Exponent"/> as a whole (<see cref="StreamRescale"/>), for the
/// stream points that reach the limit.</summary>
public sealed record StreamRescalePlan(int Exponent, double MaxAbs, IReadOnlyList<string> Points)
{
    public double MaxAbsAfter => MaxAbs * Math.ScaleB(1, -Exponent);
}

/// <summary>A point at or beyond the limit that the pass does not rescale, and why.</summary>
public sealed record Fp16Refusal(string Rule, string Point, int? Block, double MaxAbs, string Reason);

/// <summary>What the fp16-safe pass will do, decided from the statistics and the structure before any edit.</summary>
public sealed record Fp16SafePlan(IReadOnlyList<UpDownRescale> Rescales, StreamRescalePlan? Stream, IReadOnlyList<Fp16Refusal> Refusals)
{
    public const string UpDownRule = "up-down";
    public const string ResidualRule = "residual";
    public const string LinearInputRule = "linear-input";
    public static readonly string[] Rules = [UpDownRule, ResidualRule, LinearInputRule];

    /// <summary>Every activation point of <paramref name="statistics"/> whose largest |x| reaches the limit, with the fold
    /// that brings it back or the reason there is none. Points are matched to <paramref name="structure"/> by kind and
    /// block, so statistics of a float32 twin of an fp16 model (the same graph, other weight type) apply to it.</summary>
    public static Fp16SafePlan Create(ModelStructure structure, CalibrationStatistics statistics, Fp16SafeSettings settings)
    {
        ArgumentNullException.ThrowIfNull(structure);
        ArgumentNullException.ThrowIfNull(statistics);
        settings.Validate();
        var rescales = new List<UpDownRescale>();
        var refusals = new List<Fp16Refusal>();
        var streamPoints = new List<(string Id, int? Block, double Max)>();
        double limit = settings.Limit;
        foreach (var point in statistics.Manifest.Points)
        {
            if (!statistics.Points.TryGetValue(point.Id, out var stats) || stats.AttentionMass is not null || stats.Tokens == 0) continue;
            double max = Enumerable.Range(0, stats.Channels).Select(c => double.IsNaN(stats.ChannelAbsMax(c)) ? double.PositiveInfinity : stats.ChannelAbsMax(c)).DefaultIfEmpty(0).Max();
            if (!(max >= limit)) continue;
            if (point.Kind == ProbeKind.DownInput)
            {
                var (rescale, refusal) = UpDown(structure, point, stats, settings);
                if (rescale is not null) rescales.Add(rescale);
                if (refusal is not null) refusals.Add(refusal);
            }
            else if (point.Kind is ProbeKind.Embedding or ProbeKind.Residual or ProbeKind.ResidualSum)
                streamPoints.Add((point.Id, point.Block, max));
            else
                refusals.Add(new(LinearInputRule, point.Id, point.Block, max, point.Kind switch
                {
                    ProbeKind.AttentionInput or ProbeKind.FfnInput => "a norm output: a power-of-two norm-gain fold (gain / 2^k, rows of every linear reading it * 2^k) is exact but not done by this pass; fold the norm gains (--fold-norms) and re-analyze",
                    ProbeKind.OutputProjectionInput => "the o_proj input: an exact v_proj -> o_proj power-of-two fold is possible but not done by this pass",
                    _ => "not a point this pass rescales",
                }));
        }
        return new Fp16SafePlan(rescales, PlanStream(structure, streamPoints, limit, refusals), refusals);
    }

    private static StreamRescalePlan? PlanStream(ModelStructure structure, List<(string Id, int? Block, double Max)> points, double limit, List<Fp16Refusal> refusals)
    {
        if (points.Count == 0) return null;
        double max = points.Max(p => p.Max);
        string? blocker = !double.IsFinite(max)
            ? "the stream is not finite in the statistics (the model overflowed while calibrating): calibrate a float32 copy of the model"
            : StreamRescale.Blocker(structure);
        if (blocker is null) return new StreamRescalePlan(PowerOfTwo.ExponentToFit(max, limit), max, points.Select(p => p.Id).ToArray());
        refusals.AddRange(points.Select(p => new Fp16Refusal(ResidualRule, p.Id, p.Block, double.IsFinite(p.Max) ? p.Max : double.MaxValue, ResidualReason + blocker)));
        return null;
    }

    /// <summary>Why the residual stream is refused (the exactness condition, precisely); the blocker follows.</summary>
    public const string ResidualReason =
        "the residual stream: a per-channel 2^-k on the down projection's (or o_proj's) output columns is never exact, " +
        "because its readers do not absorb it: the residual Add also takes the unscaled stream (y8 = y7 + y1), and every " +
        "norm reading the stream divides by the rms (or std) over all channels, so one channel's scale changes every " +
        "channel's output; exact only as one uniform 2^-k of the whole stream (every writer: embedding tables, o_proj and " +
        "down projection outputs and biases; every norm's epsilon * 2^-2k), which is not exact here: ";

    private static (UpDownRescale?, Fp16Refusal?) UpDown(ModelStructure structure, ProbePoint point, PointStatistics stats, Fp16SafeSettings settings)
    {
        double limit = settings.Limit;
        double pointMax = Enumerable.Range(0, stats.Channels).Max(c => stats.ChannelAbsMax(c));
        Fp16Refusal Refuse(string reason) => new(UpDownRule, point.Id, point.Block, double.IsFinite(pointMax) ? pointMax : double.MaxValue, reason);
        var block = structure.Blocks.FirstOrDefault(b => b.Index == point.Block);
        if (block?.Ffn is not { } ffn) return (null, Refuse(block?.Moe is not null ? "a mixture-of-experts FFN: per-expert folds are not done" : "no recognized FFN in this block"));
        if (stats.Channels != ffn.Down.InFeatures)
            throw new MitigationInputException($"statistics point '{point.Id}' has {stats.Channels} channels, the down projection of block {block.Index} reads {ffn.Down.InFeatures}: the statistics are of another model");
        if (ffn.Kind == FfnKind.Glu && ffn.Gate is null) return (null, Refuse("a GLU without a separate gate projection"));
        if (ffn.Kind == FfnKind.Glu && ffn.Gate!.Weight == ffn.Up.Weight)
            return (null, Refuse("gate and up are one packed projection: its up half cannot be told from the weight alone"));
        if (ffn.Kind == FfnKind.Mlp && ffn.Activation != FfnActivation.Relu)
            return (null, Refuse($"an MLP FFN with {ffn.Activation}: act(2^-k x) != 2^-k act(x), so fc1's output cannot be rescaled against fc2 (only ReLU and the GLU product are homogeneous)"));
        foreach (var linear in new[] { ffn.Up, ffn.Down })
        {
            if (linear.Quantized || linear.Form is not (LinearForm.MatMul or LinearForm.Gemm))
                return (null, Refuse($"{linear}: a {linear.Form} weight is quantized or packed; a scale cannot be folded into it"));
            if (linear.Selection is not null) return (null, Refuse($"{linear}: a weight selected from a stack at run time"));
            if (!Folding.ScaledTensor.Supports(linear.Weight.ConstValue?.DataType ?? Tensors.TensorDataType.Undefined))
                return (null, Refuse($"{linear}: the weight is not a FLOAT, FLOAT16 or BFLOAT16 initializer"));
            if (linear.Weight.ConstValue!.Dims.Count != 2) return (null, Refuse($"{linear}: the weight is not a matrix"));
        }
        // The fold changes y4 (the up output) and y6: nothing but the FFN's own product may read them.
        var activation = ffn.ActivationNodes.ToHashSet();
        if (ffn.Up.Output.IsGraphOutput || ffn.Up.Output.Consumers.Any(n => !activation.Contains(n)))
            return (null, Refuse($"the up projection's output '{ffn.Up.Output.Name}' is also read outside the FFN product"));
        if (ffn.DownInput.IsGraphOutput || ffn.DownInput.Consumers.Any(n => n != ffn.Down.Node))
            return (null, Refuse($"the down-projection input '{ffn.DownInput.Name}' is also read by another node"));
        var neurons = new List<RescaledNeuron>();
        for (int c = 0; c < stats.Channels; c++)
        {
            double a = stats.ChannelAbsMax(c);
            if (!double.IsFinite(a))
                return (null, Refuse($"neuron {c} is not finite in the statistics (the model overflowed while calibrating): calibrate a float32 copy of the model to measure how far it goes"));
            if (a >= limit) neurons.Add(new RescaledNeuron(c, a, PowerOfTwo.ExponentToFit(a, limit)));
        }
        return (new UpDownRescale(block.Index, point.Id, ffn, neurons), null);
    }
}
