using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Structure.Rules;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>The generic fallback: walks the residual stream (<see cref="ResidualChain"/>) and, for every pair of joins
/// no recognized block accounts for, reports a block anyway: residual in/out, the norms before each sublayer, and its
/// linears grouped by the tensor they read. A sublayer that a rule did recognize (an attention unit whose output
/// projection is the branch, an FFN whose down projection is) keeps its role; the rest become
/// <see cref="OpaqueSublayer"/>s, classified by <see cref="MixerRules"/> (linear attention, SSM, short conv) or
/// <see cref="BlockKind.Unknown"/>, with what was not understood in the trace.</summary>
internal sealed class FallbackAssembler
{
    private const string Rule = "Blocks/Fallback";
    private readonly Graph _graph;
    private readonly LinearIndex _linears;
    private readonly List<NormRole> _norms;
    private readonly List<AttentionRole> _attentions;
    private readonly List<FfnRole> _ffns;
    private readonly RecognitionTrace _trace;
    private readonly Dictionary<Node, int> _position = [];
    private readonly Dictionary<Value, NormRole> _normByOutput = [];
    private readonly ResidualChain _chain;

    public FallbackAssembler(Graph graph, LinearIndex linears, List<NormRole> norms, List<AttentionRole> attentions, List<FfnRole> ffns, RecognitionTrace trace)
    {
        (_graph, _linears, _norms, _attentions, _ffns, _trace) = (graph, linears, norms, attentions, ffns, trace);
        for (int i = 0; i < graph.Nodes.Count; i++) _position[graph.Nodes[i]] = i;
        foreach (var n in norms) _normByOutput.TryAdd(n.Output, n);
        _chain = new ResidualChain(graph, _position, norms);
    }

    private int Pos(Node node) => _position.GetValueOrDefault(node, -1);

    /// <summary>Mixture-of-experts FFNs: an FFN join whose branch is one of their outputs is that MoE.</summary>
    public IReadOnlyList<MoeRole> Moes { get; init; } = [];

    /// <summary>The recognized blocks, completed with fallback blocks where the residual stream has joins they do not
    /// account for; re-indexed in stream order. Returns <paramref name="blocks"/> itself when nothing is added.</summary>
    public List<BlockRole> Complete(List<BlockRole> blocks, EmbeddingRole? embedding)
    {
        var joins = _chain.Longest(Starts(blocks, embedding));
        var unclaimed = joins.Select(j => !Claimed(j, blocks)).ToList();
        _trace.Count(Rule, false, "blocks");
        if (!unclaimed.Contains(true)) return blocks;
        int added = 0;

        var result = new List<(int Position, BlockRole Block)>();
        foreach (var b in blocks) result.Add((Pos(b.ResidualOut.Node ?? b.ResidualOut.Value?.Producer ?? _graph.Nodes[0]), b));
        for (int i = 0; i < joins.Count; i++)
        {
            if (!unclaimed[i]) continue;
            // A block is a token mixer and the FFN after it: a lone unclaimed join (the next one belongs to a recognized
            // block, or the stream ends) is not a block.
            if (i + 1 >= joins.Count || !unclaimed[i + 1])
            {
                _trace.Note(Rule, $"the residual join at {joins[i].Node.Describe()} adds '{joins[i].Branch.Name}' with no second sublayer after it: not a block");
                continue;
            }
            var block = Build(joins[i], joins[i + 1], i > 0 ? joins[i - 1] : null);
            result.Add((Pos(joins[i + 1].Node), block));
            _trace.Count(Rule, true, "blocks");
            added++;
            i++;
        }
        if (added == 0) return blocks;
        return result.OrderBy(r => r.Position).Select((r, index) => r.Block with { Index = index }).ToList();
    }

    private IEnumerable<Value> Starts(List<BlockRole> blocks, EmbeddingRole? embedding)
    {
        if (embedding is not null) yield return embedding.Output;
        if (blocks.Count > 0 && blocks[0].ResidualIn.Value is { } r) yield return r;
        // A decoder fed inputs_embeds (or a hidden-state input): float graph inputs of rank 3 that are not caches.
        foreach (var input in _graph.Inputs)
            if (!input.IsInitializer && input.ElementType?.IsFloatingPoint() == true && input.Shape is { Count: 3 }
                && !input.Name.Contains("past", StringComparison.OrdinalIgnoreCase) && !input.Name.Contains("cache", StringComparison.OrdinalIgnoreCase))
                yield return input;
    }

    private static bool Claimed(StreamJoin join, List<BlockRole> blocks)
    {
        foreach (var b in blocks)
        {
            if (Same(join.StreamOut, b.ResidualOut) || b.AttentionResidual is { } ar && Same(join.StreamOut, ar)) return true;
            if (GraphWalk.SameTensor(join.Branch, b.Attention?.Output?.Output) || GraphWalk.SameTensor(join.Branch, b.Ffn?.Down.Output)) return true;
        }
        return false;
    }

    private static bool Same(TensorRef a, TensorRef b) =>
        a.Value is not null && b.Value is not null ? GraphWalk.SameTensor(a.Value, b.Value) : a.Node == b.Node && a.OutputIndex == b.OutputIndex;

    private BlockRole Build(StreamJoin mixerJoin, StreamJoin ffnJoin, StreamJoin? previous)
    {
        var mixerNorm = NormBefore(mixerJoin, previous);
        var attention = _attentions.FirstOrDefault(a => a.Output is { } o && GraphWalk.SameTensor(o.Output, mixerJoin.Branch));
        var mixer = attention is null ? Opaque(mixerJoin, mixerNorm, isFfn: false) : null;
        var ffnNorm = NormBefore(ffnJoin, mixerJoin);
        var ffn = _ffns.FirstOrDefault(f => GraphWalk.SameTensor(f.Down.Output, ffnJoin.Branch));
        var moe = ffn is null ? Moes.FirstOrDefault(m => GraphWalk.SameTensor(m.Output, ffnJoin.Branch)) : null;
        var opaqueFfn = ffn is null && moe is null ? Opaque(ffnJoin, ffnNorm, isFfn: true) : null;
        // The chain only continues through pre-norm joins (a post-norm block's stream runs through its norm).
        return new BlockRole
        {
            Index = 0,
            Placement = NormPlacement.PreNorm,
            AttentionNorm = mixerNorm,
            Attention = attention,
            AttentionResidual = mixerJoin.StreamOut,
            FfnNorm = ffnNorm,
            Ffn = ffn,
            ResidualIn = TensorRef.Of(mixerJoin.StreamIn),
            ResidualOut = ffnJoin.StreamOut,
            Mixer = mixer,
            OpaqueFfn = opaqueFfn,
            Moe = moe,
        };
    }

    /// <summary>The norm a sublayer reads: the previous join's skip norm (it normalizes the stream it emits), or a norm
    /// of the stream inside the sublayer.</summary>
    private NormRole? NormBefore(StreamJoin join, StreamJoin? previous)
    {
        if (previous?.SkipNorm is { } skip && GraphWalk.SameTensor(previous.StreamOut.Value, join.StreamIn)) return skip;
        return _norms.FirstOrDefault(n => n.Skip is null && GraphWalk.SameTensor(n.Input.Value, join.StreamIn) && join.Sublayer.Contains(n.OutputNode));
    }

    private OpaqueSublayer Opaque(StreamJoin join, NormRole? norm, bool isFfn)
    {
        var nodes = join.Sublayer.OrderBy(Pos).ToList();
        var input = norm?.Output ?? join.StreamIn;
        var linears = nodes.Select(n => _linears.ByNode(n)).Where(l => l is not null).Select(l => l!).Distinct().ToList();
        var output = _linears.ByOutput(join.Branch) is { } o && linears.Contains(o) ? o : null;
        var groups = linears.Where(l => l != output).GroupBy(l => GraphWalk.Upstream(l.Input))
            .Select(g => new LinearGroup(g.Key, _normByOutput.GetValueOrDefault(g.Key), g.ToList())).ToList();
        var inner = _norms.Where(n => n != norm && join.Sublayer.Contains(n.OutputNode)).ToList();
        var states = States(nodes, join);
        var core = nodes.Where(IsCore).ToList();
        var ops = core.SelectMany(n => n.Subgraphs.SelectMany(g => g.SelfAndSubgraphs()).SelectMany(g => g.Nodes).Prepend(n))
            .Select(n => n.OpType).Concat(nodes.Select(n => n.OpType)).ToHashSet();
        var features = new MixerFeatures(states, ops, groups.Sum(g => g.Linears.Count), output is not null);
        var rule = isFfn ? null : MixerRules.Classify(features);
        var form = SublayerForm.Of(core);
        var notes = new List<string>();
        string what = isFfn ? "FFN" : "token mixer";
        string where = $"the {what} between '{join.StreamIn.Name}' and '{join.Branch.Name}' ({nodes.Count} nodes, core {form})";
        if (rule is null)
        {
            notes.Add(isFfn
                ? $"{where}: no FFN rule (GLU/MLP activation between an up and a down projection) matched; reported as unknown with {linears.Count} linear(s)"
                : $"{where}: no attention rule and no mixer rule ({string.Join(", ", MixerRules.All.Select(r => $"{r.Name}: {r.Evidence}"))}) matched; reported as unknown with {linears.Count} linear(s) and {states.Count} state(s)");
        }
        else notes.Add($"{where}: {rule.Name} ({rule.Evidence}); internals are opaque");
        if (rule is null && core.Count > 0)
        {
            // Why the rules that looked at its core ops (an attention op whose paths did not trace) gave up.
            var described = core.Select(n => n.Describe()).ToList();
            foreach (var note in _trace.Rules.SelectMany(r => r.Notes).Where(n => described.Any(d => n.Contains(d, StringComparison.Ordinal))).Distinct().Take(4))
                notes.Add($"{where}: {note}");
        }
        if (output is null) notes.Add($"{where}: the tensor added to the stream, '{join.Branch.Name}', is not the output of a linear layer");
        foreach (var n in notes) _trace.Note(Rule, n);
        return new OpaqueSublayer
        {
            Kind = rule?.Kind ?? BlockKind.Unknown,
            Form = form,
            Input = input,
            Output = join.Branch,
            InputProjections = groups,
            OutputProjection = output,
            InnerNorms = inner,
            States = states,
            CoreNodes = core,
            NotUnderstood = notes,
        };
    }

    private static readonly HashSet<string> Plumbing =
    [
        "MatMulNBits", "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization",
        "RotaryEmbedding", "FusedMatMul", "QuickGelu", "FastGelu", "BiasGelu", "Gelu", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
    ];

    private bool IsCore(Node n) =>
        _linears.ByNode(n) is null && (n.Is("If") || n.Is("Scan") || n.Is("Loop") || n.Is("Conv") || n.Is("Softmax")
            || !n.IsDefaultDomain && !Plumbing.Contains(n.OpType));

    private static readonly HashSet<string> StatePlumbing =
        ["Slice", "Concat", "Identity", "Reshape", "Transpose", "Unsqueeze", "Squeeze", "Cast", "ScatterND", "TensorScatter", "Gather"];

    private static IEnumerable<Value> WrittenNextTo(Value value, StreamJoin join, int depth)
    {
        if (depth == 0) yield break;
        foreach (var use in value.Uses)
        {
            if (use.Node is not { IsDefaultDomain: true } c || c.Graph != join.Node.Graph || c == join.Node || join.Sublayer.Contains(c) || !StatePlumbing.Contains(c.OpType)) continue;
            foreach (var o in c.Outputs)
            {
                if (o is null) continue;
                if (o.IsGraphOutput && o.ElementType?.IsFloatingPoint() != false) yield return o;
                foreach (var deeper in WrittenNextTo(o, join, depth - 1)) yield return deeper;
            }
        }
    }

    /// <summary>Graph inputs the sublayer reads and graph outputs it writes besides its branch (float tensors: masks and
    /// position ids are not states), paired past -> present by kind in order.</summary>
    private List<StateRole> States(List<Node> nodes, StreamJoin join)
    {
        var pasts = new List<Value>();
        var presents = new List<Value>();
        foreach (var n in nodes)
        {
            foreach (var v in _chain.InputsOf(n))
                if (v.IsGraphInput && !v.IsInitializer && v != join.StreamIn && v.ElementType?.IsFloatingPoint() == true && !pasts.Contains(v)) pasts.Add(v);
            foreach (var o in n.Outputs)
            {
                if (o is null || o == join.Branch) continue;
                if (o.IsGraphOutput && !presents.Contains(o)) presents.Add(o);
                // The updated state is often cut from what the mixer reads (Slice of [past | new] for a conv state) or
                // written next to it: graph outputs one or two state-plumbing ops away.
                foreach (var written in WrittenNextTo(o, join, 2))
                    if (!presents.Contains(written)) presents.Add(written);
            }
        }
        var states = new List<StateRole>();
        foreach (var kind in pasts.Select(p => MixerRules.StateKindOf(p.Name)).Concat(presents.Select(p => MixerRules.StateKindOf(p.Name))).Distinct())
        {
            var ps = pasts.Where(p => MixerRules.StateKindOf(p.Name) == kind).ToList();
            var qs = presents.Where(p => MixerRules.StateKindOf(p.Name) == kind).ToList();
            for (int i = 0; i < Math.Max(ps.Count, qs.Count); i++)
                states.Add(new StateRole(kind, i < ps.Count ? ps[i] : null, i < qs.Count ? qs[i] : null));
        }
        return states;
    }
}
