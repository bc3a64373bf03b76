using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Mitigation.Fp16Safe;

/// <summary><c>--fp16-safe</c>: where the statistics show values beyond, or within <see cref="Fp16SafeSettings.Margin"/>
/// of, the fp16 maximum at a down-projection input (y6 = act(gate) * up, linear in up), divides each such neuron by
/// 2^k through the foldable pair: the up projection's output column (and bias) times 2^-k, the down projection's input
/// row times 2^k, so y6 stays in range and the down projection's output is unchanged. Powers of two only change
/// exponents: every edited element is checked to be bit-exact in the stored type (fp32, fp16, bf16) before anything is
/// written, and a site where one is not (an element that would overflow or turn subnormal) is refused with the element
/// named. Where a residual-stream point (embedding, block outputs, attention residual sums) reaches the limit, the whole
/// stream is divided by one 2^k instead (<see cref="StreamRescale"/>: every writer's output, every norm's epsilon by
/// 2^-2k), exact where nothing but norms and residual Adds read the stream; a per-channel scale of the stream is never
/// exact, and a structure where the uniform one is not either is refused with the reason
/// (<see cref="Fp16SafePlan.ResidualReason"/>). Norm outputs and o_proj inputs are listed as skipped with the fold
/// that would serve them. Weights go through <see cref="ScaledTensor"/> (lazy, chunked); initializers read elsewhere
/// are copied first.</summary>
public sealed class Fp16SafePass : GraphPass
{
    public const string PassName = "fp16-safe";

    private readonly ModelStructure _structure;
    private readonly CalibrationStatistics _statistics;

    /// <param name="structure">The structure recognized in the model the pass runs on.</param>
    /// <param name="statistics">Calibration statistics of this model, or of a float32 twin with the same graph (an fp16
    /// model that overflows cannot measure how far its values go).</param>
    public Fp16SafePass(ModelStructure structure, CalibrationStatistics statistics, Fp16SafeSettings? settings = null)
        : base(PassName, GraphScope.AllGraphs, Fp16SafePlan.Rules)
    {
        ArgumentNullException.ThrowIfNull(structure);
        ArgumentNullException.ThrowIfNull(statistics);
        Settings = settings ?? new Fp16SafeSettings();
        Settings.Validate();
        _structure = structure;
        _statistics = statistics;
    }

    public Fp16SafeSettings Settings { get; }

    /// <summary>The folds applied by the last run (null before it ran).</summary>
    public IReadOnlyList<UpDownRescale>? Applied { get; private set; }

    /// <summary>The whole-stream rescale applied by the last run (null: none was needed or possible).</summary>
    public StreamRescalePlan? Stream { get; private set; }

    /// <summary>The points at or beyond the limit that were left alone, with the reason (null before the pass ran).</summary>
    public IReadOnlyList<Fp16Refusal>? Refused { get; private set; }

    protected override void RunOnGraph(Graph graph, PassContext context, PassRecorder recorder)
    {
        if (!ReferenceEquals(graph, _structure.Graph)) return;
        var plan = Fp16SafePlan.Create(_structure, _statistics, Settings);
        if (plan.Rescales.Count == 0 && plan.Stream is null && plan.Refusals.Count == 0)
            throw new MitigationInputException($"no value in the statistics reaches {Settings.Limit:G6} (the fp16 maximum {Settings.Fp16Max:G6} / {Settings.Margin:G3}): nothing to rescale for fp16");
        var applied = new List<UpDownRescale>();
        var refused = plan.Refusals.ToList();
        var redirects = new Dictionary<Value, Value>();
        // The stream first: it edits the down projections' output columns, the up -> down folds then their input rows
        // (the kernel composes both onto the original weight, one rounding).
        if (plan.Stream is { } stream)
        {
            var origin = new NodeOrigin(PassName, Fp16SafePlan.ResidualRule);
            if (StreamRescale.Apply(context.Model, _structure, stream.Exponent, origin, redirects) is { } problem)
                refused.AddRange(stream.Points.Select(p => new Fp16Refusal(Fp16SafePlan.ResidualRule, p, null, stream.MaxAbs, Fp16SafePlan.ResidualReason + problem)));
            else
            {
                Stream = stream;
                recorder.Count(Fp16SafePlan.ResidualRule);
            }
        }
        foreach (var site in plan.Rescales)
        {
            context.Cancellation.ThrowIfCancellationRequested();
            if (Fold(context.Model, site, redirects) is { } problem) refused.Add(new(Fp16SafePlan.UpDownRule, site.Point, site.Block, site.MaxAbsBefore, problem));
            else
            {
                applied.Add(site);
                recorder.Count(Fp16SafePlan.UpDownRule);
            }
        }
        foreach (var r in refused) recorder.Skip(r.Rule, $"max |x| {r.MaxAbs:G6}: {r.Reason}", graph, r.Point);
        Applied = applied;
        Refused = refused;
    }

    /// <summary>Folds one site; returns why it cannot be done exactly (nothing edited then), or null when done.</summary>
    private string? Fold(Model model, UpDownRescale site, IReadOnlyDictionary<Value, Value> redirects)
    {
        var ffn = site.Ffn;
        var down = new double[ffn.Down.InFeatures];
        Array.Fill(down, 1.0);
        foreach (var n in site.Neurons) down[n.Neuron] = PowerOfTwo.Factor(n.Exponent);
        var up = down.Select(s => 1 / s).ToArray(); // exact: reciprocals of powers of two
        if (ffn.Up.OutFeatures != down.Length) return $"the up projection has {ffn.Up.OutFeatures} outputs, the down projection {down.Length} inputs";

        var edits = new List<(Value Initializer, HashSet<Node> Site, Tensor Scaled)>();
        string? Add(Value initializer, IEnumerable<Node> siteNodes, double[]? rows, double[]? columns, string what)
        {
            initializer = redirects.GetValueOrDefault(initializer, initializer);
            var source = initializer.ConstValue!;
            var scaled = ScaledTensor.Scale(source, rows, columns);
            if (ExactScaleCheck.FirstInexact(source, scaled, rows, columns) is { } inexact)
                return $"{what} '{initializer.Name}' would not be exact: {inexact}";
            edits.Add((initializer, siteNodes.ToHashSet(), scaled));
            return null;
        }
        var upNodes = ffn.Up.WeightPath.Append(ffn.Up.Node);
        var problem = ffn.Up.Layout == WeightLayout.InOut
            ? Add(ffn.Up.Weight, upNodes, null, up, "the up projection's weight")
            : Add(ffn.Up.Weight, upNodes, up, null, "the up projection's weight");
        if (problem is null && ffn.Up.Bias is { } bias)
        {
            if (bias.ConstValue is not { } b || b.ElementCount != up.Length || !ScaledTensor.Supports(b.DataType))
                return $"the up projection's bias '{bias.Name}' is not a float vector of {up.Length} initializer values";
            var biasNodes = new[] { ffn.Up.Node }.Concat(ffn.Up.BiasNode is { } bn ? [bn] : []);
            problem = Add(bias, biasNodes, null, up, "the up projection's bias");
        }
        var downNodes = ffn.Down.WeightPath.Append(ffn.Down.Node);
        problem ??= ffn.Down.Layout == WeightLayout.InOut
            ? Add(ffn.Down.Weight, downNodes, down, null, "the down projection's weight")
            : Add(ffn.Down.Weight, downNodes, null, down, "the down projection's weight");
        if (problem is not null) return problem;
        var origin = new NodeOrigin(PassName, Fp16SafePlan.UpDownRule);
        foreach (var (initializer, nodes, scaled) in edits)
            SiteInitializer.Replace(model, _structure, initializer, nodes, scaled, origin);
        return null;
    }
}
