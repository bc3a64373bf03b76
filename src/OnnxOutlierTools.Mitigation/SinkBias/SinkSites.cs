using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Mitigation.SinkBias;

/// <summary>How the prefix's keys and values enter a model.</summary>
public enum SinkForm
{
    /// <summary>A KV-cache decoder: the prefix is concatenated in front of every past input; attention_mask, positions and
    /// GroupQueryAttention's lengths are extended; the present outputs have the prefix sliced off.</summary>
    Cache,
    /// <summary>Decomposed attention without a cache: the prefix is concatenated into K^T and V right before the score and
    /// context MatMuls, and the mask joined to the scores gets the prefix's visible columns in front.</summary>
    Inline,
}

/// <summary>One attention layer's place to insert the prefix. Cache form: <see cref="Key"/>/<see cref="Value"/> are the
/// past inputs and <see cref="PresentKey"/>/<see cref="PresentValue"/> the present outputs (whose captured values are the
/// prefix's keys and values). Inline form: <see cref="Key"/> is the score MatMul's K^T input [B, H, hs, T] and
/// <see cref="Value"/> the context MatMul's V input [B, H, T, hs] (captured as they are); <see cref="ScoreMatMul"/>,
/// <see cref="ContextMatMul"/> and <see cref="MaskJoins"/> (the path nodes reading the mask) are where they are read.</summary>
public sealed record SinkSite(int Block, SinkForm Form, Value Key, Value Value)
{
    public Value? PresentKey { get; init; }
    public Value? PresentValue { get; init; }
    public Node? ScoreMatMul { get; init; }
    public Node? ContextMatMul { get; init; }
    /// <summary>The nodes between the score MatMul and the Softmax that join a mask to the scores, with the input index of
    /// the mask and the value that keeps a score (0 for an additive mask, the Where condition's keeping value); empty when the attention has no mask on its scores.</summary>
    public IReadOnlyList<(Node Node, int Input, double Keep)> MaskJoins { get; init; } = [];

    /// <summary>The captured tensors to fetch from the original model (present outputs, or the inline K^T and V).</summary>
    public Value CapturedKey => PresentKey ?? Key;
    public Value CapturedValue => PresentValue ?? Value;
}

/// <summary>The sites of a whole model, all of one <see cref="SinkForm"/>, and the inputs the rewrite adjusts.</summary>
public sealed record SinkPlan(SinkForm Form, IReadOnlyList<SinkSite> Sites, Value? AttentionMask, Value? PositionIds,
    Value? SeqLensK, Value? TotalSequenceLength);

/// <summary>Finds where the prefix goes in a recognized model, or refuses with one line saying why (a
/// <see cref="SinkBiasException"/>): no recognized attention, a merged If or nested decoder, a stacked or partial cache, an
/// attention op without a cache (its keys and values are not reachable), a mask form it cannot extend, rotary positions it
/// cannot shift.</summary>
public static class SinkSites
{
    public static SinkPlan Find(ModelStructure structure, string modelName)
    {
        ArgumentNullException.ThrowIfNull(structure);
        if (structure.Branches is not null)
            throw new SinkBiasException($"{modelName}: a merged decoder (If on use_cache_branch) cannot take the sink bias; rewrite the decoder-with-past export instead");
        if (structure.NestedIn is not null)
            throw new SinkBiasException($"{modelName}: the decoder is nested in '{structure.NestedIn}'; the sink bias rewrites a top-level decoder only");
        var attentions = structure.Blocks.Where(b => b.Attention is not null).Select(b => (b.Index, Attention: b.Attention!)).ToList();
        if (attentions.Count == 0)
            throw new SinkBiasException($"{modelName}: no recognized attention layer, so there is nothing to give a sink");
        if (structure.Blocks.Any(b => b.Attention is null))
            throw new SinkBiasException($"{modelName}: block(s) {string.Join(", ", structure.Blocks.Where(b => b.Attention is null).Select(b => b.Index))} have no recognized attention (a {structure.Blocks.First(b => b.Attention is null).Kind} mixer); the prefix would be missing there");
        if (structure.Blocks.Any(b => b.CrossAttention is not null))
            throw new SinkBiasException($"{modelName}: an encoder-decoder model; the sink bias is for decoder-only models");

        var graph = structure.Graph;
        var mask = structure.Inputs.AttentionMask ?? graph.Inputs.FirstOrDefault(i => i.Name == "attention_mask");
        var positions = structure.Inputs.PositionIds ?? graph.Inputs.FirstOrDefault(i => i.Name == "position_ids");
        var seqLensK = graph.Inputs.FirstOrDefault(i => i.Name.Contains("seqlens_k", StringComparison.OrdinalIgnoreCase));
        var total = graph.Inputs.FirstOrDefault(i => i.Name is "total_sequence_length" or "total_seq_len");

        bool cached = attentions.Any(a => a.Attention.Cache is not null);
        var sites = cached
            ? attentions.Select(a => CacheSite(a.Index, a.Attention, graph, modelName)).ToList()
            : attentions.Select(a => InlineSite(a.Index, a.Attention, modelName)).ToList();

        bool rotary = attentions.Any(a => a.Attention.Rotary.Style != RotaryStyle.None);
        bool gqa = attentions.All(a => a.Attention.Form.Op == AttentionOp.GroupQueryAttention);
        // GroupQueryAttention's positions come from seqlens_k (or from the mask, in-graph), which the extended mask shifts.
        if (rotary && positions is null && !gqa && !(cached && RotaryPositionsFollowThePrefix(graph, mask, sites)))
            throw new SinkBiasException($"{modelName}: rotary positions are computed in-graph without a position_ids input; the sink bias cannot shift them by the prefix length");
        if (structure.Embedding?.Form == EmbeddingForm.GatherWithPositions && positions is null)
            throw new SinkBiasException($"{modelName}: learned position embeddings without a position_ids input; the sink bias cannot shift them by the prefix length");
        if (cached && mask is null && seqLensK is null)
            throw new SinkBiasException($"{modelName}: a KV-cache decoder without attention_mask or seqlens_k input; the prefix's columns cannot be made visible");
        return new SinkPlan(cached ? SinkForm.Cache : SinkForm.Inline, sites, mask, positions, seqLensK, total);
    }

    /// <summary>Without a position_ids input, RotaryEmbedding ops whose positions are computed from attention_mask or from a
    /// past input (genai's ReduceSum(mask) - S + Range, or the past length) move with the extended mask and past by
    /// themselves; positions computed from the text alone would not.</summary>
    private static bool RotaryPositionsFollowThePrefix(Graph graph, Value? mask, IReadOnlyList<SinkSite> sites)
    {
        var sources = sites.SelectMany(s => new[] { s.Key, s.Value }).Append(mask).OfType<Value>().ToHashSet();
        var rotaries = graph.Nodes.Where(n => n.OpType == "RotaryEmbedding").ToList();
        return rotaries.Count > 0 && rotaries.All(n => n.Input(1) is { } positions && DependsOn(positions, sources));
    }

    private static bool DependsOn(Value value, HashSet<Value> sources)
    {
        var seen = new HashSet<Value>();
        var stack = new Stack<Value>([value]);
        while (stack.Count > 0)
        {
            var v = stack.Pop();
            if (!seen.Add(v)) continue;
            if (sources.Contains(v)) return true;
            foreach (var input in v.Producer?.Inputs ?? []) if (input is not null) stack.Push(input);
        }
        return false;
    }

    private static SinkSite CacheSite(int block, AttentionRole attention, Graph graph, string modelName)
    {
        if (attention.Cache is not { PastKey: { } pastKey, PastValue: { } pastValue, PresentKey: { } presentKey, PresentValue: { } presentValue } cache)
            throw new SinkBiasException($"{modelName}: block {block}'s {attention.Form} attention has no past/present key and value pair (other layers have a KV cache)");
        if (cache.Stacked)
            throw new SinkBiasException($"{modelName}: block {block} keeps key and value in one stacked cache tensor ({pastKey.Name}); only separate past_key_values.i.key/value caches are supported");
        if (!pastKey.IsGraphInput || !pastValue.IsGraphInput || !graph.Outputs.Contains(presentKey) || !graph.Outputs.Contains(presentValue))
            throw new SinkBiasException($"{modelName}: block {block}'s cache ({pastKey.Name} -> {presentKey.Name}) is not a graph input/output pair");
        if (pastKey.Shape is { Count: not 4 } || presentKey.Shape is { Count: not 4 })
            throw new SinkBiasException($"{modelName}: block {block}'s cache {pastKey.Name} is not a [batch, heads, length, head_size] tensor");
        if (pastKey.Shape is { } shape && shape[2].IsKnown)
            throw new SinkBiasException($"{modelName}: block {block}'s cache {pastKey.Name} has a fixed length ({shape[2]}): a static (scatter) cache; the sink bias needs a growing past_key_values cache");
        return new SinkSite(block, SinkForm.Cache, pastKey, pastValue) { PresentKey = presentKey, PresentValue = presentValue };
    }

    private static SinkSite InlineSite(int block, AttentionRole attention, string modelName)
    {
        if (attention.Form.Op != AttentionOp.Decomposed)
            throw new SinkBiasException($"{modelName}: block {block}'s {attention.Form} op without a KV cache hides its keys and values; the sink bias needs decomposed attention or a KV-cache export");
        // The decomposed rule lists [mask/scale path..., Q K^T MatMul, Softmax, context MatMul].
        var core = attention.CoreNodes;
        if (core.Count < 3 || !core[^1].Is("MatMul") || !core[^2].Is("Softmax") || !core[^3].Is("MatMul"))
            throw new SinkBiasException($"{modelName}: block {block}'s decomposed attention is not MatMul -> ... -> Softmax -> MatMul");
        Node scores = core[^3], softmax = core[^2], context = core[^1];
        // The score chain: the path nodes the scores flow through from Q K^T to the Softmax (the mask's own subgraph, which
        // the recognizer's walk may also have collected, is not on it).
        var path = core.Take(core.Count - 3).ToHashSet();
        var onChain = new HashSet<Value> { scores.Outputs[0]! };
        var chain = new List<Node>();
        var frontier = new Queue<Value>(onChain);
        while (frontier.Count > 0)
            foreach (var node in frontier.Dequeue().Consumers)
                if (path.Contains(node) && !chain.Contains(node))
                {
                    chain.Add(node);
                    foreach (var output in node.Outputs) if (output is not null && onChain.Add(output)) frontier.Enqueue(output);
                }
        if (!onChain.Contains(softmax.Input(0)!))
            throw new SinkBiasException($"{modelName}: block {block}: the scores of {scores.Describe()} do not reach {softmax.Describe()} through the recognized path");
        var joins = new List<(Node, int, double)>();
        foreach (var node in chain)
            for (int i = 0; i < node.Inputs.Count; i++)
            {
                var input = node.Inputs[i];
                if (input is null || onChain.Contains(input) || input.IsInitializer || input.Producer is { } p && p.Is("Constant")) continue;
                // A computed scalar (a scale from Shape) broadcasts over the extra columns.
                if (input.Shape is { Count: 0 } || (node.Is("Div") || node.Is("Mul")) && attention.MaskRole.Kind != MaskKind.MultiplicativeMask) continue;
                if (node.Is("Add") || node.Is("Sub")) joins.Add((node, i, 0));
                else if (node.Is("Where") && i == 0)
                    // Where(cond, scores, fill) keeps the scores where cond is true; Where(cond, fill, scores) where it is false.
                    joins.Add((node, 0, onChain.Contains(node.Input(1)!) ? 1 : 0));
                else
                    throw new SinkBiasException($"{modelName}: block {block}: '{input.Name}' joins the scores through {node.Describe()} ({attention.MaskRole.Kind}); " +
                        "only additive masks and Where conditions can be extended by the prefix's columns");
            }
        return new SinkSite(block, SinkForm.Inline, scores.Input(1)!, context.Input(1)!) { ScoreMatMul = scores, ContextMatMul = context, MaskJoins = joins };
    }
}
