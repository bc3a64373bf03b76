using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Mitigation.Folding;

/// <summary>The shared executor of the channel-rescaling passes: at each selected site it asks the method for a per-group
/// scale s, multiplies the consumers' input rows by s and, when the fold is exact, the producer (norm gain and bias, or
/// v/up output columns and bias) by 1/s; otherwise, by <see cref="Policy"/>, inserts <c>Mul(X, 1/s)</c> in front of the
/// linears or skips the site. Every weight edit goes through <see cref="ScaledTensor"/> (lazy, one rounding), copying an
/// initializer first when anything else reads it. Main graph only; counts per site kind (rules <c>qkv</c>, <c>gate-up</c>,
/// <c>fc1</c>, <c>v-o</c>, <c>up-down</c>); <see cref="Outcomes"/> says per site what happened.</summary>
public abstract class ChannelFoldPass : GraphPass
{
    private readonly ModelStructure _structure;
    private readonly HashSet<Value> _shared;
    private readonly List<FoldSiteOutcome> _outcomes = [];

    /// <exception cref="FoldRefusedException">A selected site's linear holds quantized weights.</exception>
    protected ChannelFoldPass(string name, ModelStructure structure, IEnumerable<FoldSiteKind> kinds, InexactPolicy policy)
        : base(name, GraphScope.MainGraphOnly, FoldSiteKinds.All.Select(k => k.Name()))
    {
        ArgumentNullException.ThrowIfNull(structure);
        ArgumentNullException.ThrowIfNull(kinds);
        if (!Enum.IsDefined(policy)) throw new ArgumentOutOfRangeException(nameof(policy), policy, "unknown inexact policy");
        if (structure.NestedIn is { } nested)
            throw new NotSupportedException($"the recognized blocks are in a nested graph ({nested}); folding edits the main graph only");
        var selected = kinds.ToHashSet();
        _structure = structure;
        Policy = policy;
        Sites = FoldSites.Discover(structure).Where(s => selected.Contains(s.Kind)).ToArray();
        FoldSites.RefuseQuantized(Sites);
        _shared = structure.SharedInitializers.Select(s => s.Initializer).ToHashSet();
    }

    public InexactPolicy Policy { get; }

    /// <summary>The sites of the selected kinds, in block order.</summary>
    public IReadOnlyList<FoldSite> Sites { get; }

    /// <summary>Per site, what the last run did.</summary>
    public IReadOnlyList<FoldSiteOutcome> Outcomes => _outcomes;

    /// <summary>The method's scale per group of <paramref name="site"/> (length <see cref="FoldSite.GroupCount"/>), or null
    /// with the reason to skip the site.</summary>
    protected abstract double[]? ComputeScale(FoldSite site, out string? skipReason);

    protected sealed override void RunOnGraph(Graph graph, PassContext context, PassRecorder recorder)
    {
        if (!ReferenceEquals(graph, _structure.Graph))
            throw new InvalidOperationException("the structure was recognized on another model (recognize the model the pass runs on)");
        _outcomes.Clear();
        var order = new Dictionary<Node, int>();
        foreach (var node in graph.Nodes) order[node] = order.Count;
        foreach (var site in Sites)
        {
            context.Cancellation.ThrowIfCancellationRequested();
            string rule = site.Kind.Name();
            string? reason = site.Unsupported ?? (Policy == InexactPolicy.Skip ? site.InexactReason : null);
            double[]? scale = null;
            if (reason is null)
            {
                scale = ComputeScale(site, out reason);
                if (scale is not null && Invalid(scale, site) is { } bad) (scale, reason) = (null, bad);
            }
            if (scale is null)
            {
                recorder.Skip(rule, reason ?? "no scale", graph, site.Id);
                _outcomes.Add(new FoldSiteOutcome(site.Id, site.Kind, FoldOutcome.Skipped, reason, double.NaN, double.NaN));
                continue;
            }
            var channelScale = new double[site.Channels];
            for (int c = 0; c < channelScale.Length; c++) channelScale[c] = site.ChannelScale(scale, c);
            foreach (var slot in site.ConsumerSlots) slot.Apply(graph, context.Names, _shared, channelScale);
            FoldOutcome outcome;
            if (site.Exact)
            {
                foreach (var slot in site.ProducerSlots) slot.Apply(graph, context.Names, _shared, ProducerVector(site, slot, scale));
                outcome = FoldOutcome.Exact;
            }
            else
            {
                InsertMul(graph, context, site, channelScale, order);
                outcome = FoldOutcome.MulInserted;
            }
            recorder.Count(rule);
            _outcomes.Add(new FoldSiteOutcome(site.Id, site.Kind, outcome, site.InexactReason, channelScale.Min(), channelScale.Max()));
        }
    }

    private static string? Invalid(double[] scale, FoldSite site)
    {
        if (scale.Length != site.GroupCount) return $"the method gave {scale.Length} scales for {site.GroupCount} channels";
        foreach (double s in scale)
            if (!double.IsFinite(s) || s == 0 || !double.IsFinite(1 / s)) return $"scale {s} is not finite and non-zero";
        return null;
    }

    /// <summary>1/s along the producer's channel axis: a gain or bias has the site's channels; a v or up projection's
    /// output axis has 1 outside the scaled columns (q and k of a packed QKV).</summary>
    private static double[] ProducerVector(FoldSite site, FoldSlot slot, double[] scale)
    {
        var data = FoldSlot.Data(slot.Current)!;
        var vector = new double[FoldSlot.AxisLength(data, slot.Axis)];
        Array.Fill(vector, 1.0);
        long offset = site.Producer?.ColumnOffset ?? 0;
        for (int g = 0; g < scale.Length; g++) vector[offset + g] = 1 / scale[g];
        return vector;
    }

    /// <summary>One <c>Mul(X, 1/s)</c> per tensor the site's linears read now (an earlier pass's Mul may sit there), placed
    /// before the first of them; X's producer is left unchanged.</summary>
    private void InsertMul(Graph graph, PassContext context, FoldSite site, double[] channelScale, Dictionary<Node, int> order)
    {
        foreach (var group in site.InputSlots.GroupBy(s => s.Current))
        {
            var x = group.Key;
            var type = x.ElementType ?? FoldSlot.Data(site.ConsumerSlots[0].Current)!.DataType;
            var inverse = channelScale.Select(s => 1 / s).ToArray();
            Tensor constant = type switch
            {
                TensorDataType.Float => ArrayTensor.Create<float>(inverse.Select(v => (float)v).ToArray(), inverse.Length),
                TensorDataType.Float16 => ArrayTensor.Create<Half>(inverse.Select(v => (Half)v).ToArray(), inverse.Length),
                TensorDataType.BFloat16 => ArrayTensor.Create<BFloat16>(inverse.Select(v => (BFloat16)(float)v).ToArray(), inverse.Length),
                _ => throw new NotSupportedException($"'{x.Name}' is {type.OnnxName()}, not a float type"),
            };
            var first = group.Select(s => s.Node).MinBy(n => order.GetValueOrDefault(n, int.MaxValue))!;
            var editor = context.Model.Edit(graph, new NodeOrigin(Name, site.Kind.Name())).InsertingBefore(first);
            var inverseValue = editor.Initializer($"{site.Id}.inverse_scale", constant);
            var scaled = editor.AddNode("Mul", [x, inverseValue], name: $"{site.Id}.smooth", outputs: [$"{x.Name}.scaled"]).Outputs[0]!;
            if (x.ElementType is { } t) scaled.SetTensorType(t, x.Shape);
            foreach (var slot in group) slot.Node.ReplaceInput(slot.Input, scaled);
        }
    }
}
