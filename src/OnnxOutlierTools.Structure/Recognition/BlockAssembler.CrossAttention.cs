using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Structure.Rules;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>Encoder-decoder blocks (#7 item 7): a cross-attention's keys and values are projected from a tensor the queries'
/// input does not depend on (the encoder output), so it is not a block of its own; it is attached to the block whose
/// self-attention and FFN it lies between, with its norm and residual add.</summary>
internal sealed partial class BlockAssembler
{
    /// <summary>Keys (and values) read another tensor than the queries, and not one computed from the queries' input; or they
    /// come from the cache alone (a decoder-with-past's cross-attention: no projection of them in this graph).</summary>
    private static bool IsCrossAttention(AttentionRole a) => EncoderOutputOf(a) is not null || a.KeysAndValuesFromCache && a.Query is not null;

    private static Value? EncoderOutputOf(AttentionRole a)
    {
        if (a.PackedQkv is not null || a.LowRank is not null || a.Query is not { } q || a.Key is not { } k || a.ValueProjection is not { } v) return null;
        var qIn = GraphWalk.Upstream(q.Input);
        var kIn = GraphWalk.Upstream(k.Input);
        if (kIn == qIn || GraphWalk.Upstream(v.Input) != kIn) return null;
        return DependsOn(kIn, qIn) ? null : kIn;
    }

    /// <summary>Whether <paramref name="target"/> lies upstream of <paramref name="from"/> (bounded search).</summary>
    private static bool DependsOn(Value from, Value target)
    {
        var seen = new HashSet<Value>();
        var stack = new Stack<Value>();
        stack.Push(from);
        while (stack.Count > 0 && seen.Count < 20000)
        {
            var cur = stack.Pop();
            if (cur == target) return true;
            if (!seen.Add(cur) || cur.Producer is not { } p) continue;
            foreach (var i in p.Inputs) if (i is not null && !i.IsInitializer) stack.Push(i);
        }
        return false;
    }

    private List<BlockRole> AttachCrossAttention(List<BlockRole> blocks)
    {
        var cross = _attentions.Where(a => a.Output is not null && IsCrossAttention(a)).ToList();
        if (cross.Count == 0) return blocks;
        var result = new List<BlockRole>(blocks.Count);
        foreach (var b in blocks)
        {
            int after = b.Attention?.Output is { } o ? Pos(o.Node) : -1;
            int before = b.Ffn is { } f ? Pos(f.Up.Node) : int.MaxValue;
            var c = cross.FirstOrDefault(a => Pos(a.Query!.Node) > after && Pos(a.Output!.Node) < before);
            if (c is null) { result.Add(b); continue; }
            cross.Remove(c);
            var join = ResidualJoin(c.Output!.Output);
            // Pre-norm (Whisper, T5): the norm feeds the queries. Post-norm (BART): the norm reads the residual sum, the stream goes on from it.
            NormRole? norm = b.Placement == NormPlacement.PostNorm ? (join is null ? null : NormReading(join)) : NormFeeding(c.Query!.Input);
            var residual = b.Placement == NormPlacement.PostNorm && norm is not null ? TensorRef.Of(norm.Output) : join?.Sum;
            result.Add(b with { CrossAttention = new CrossAttentionRole { Attention = c, Norm = norm, EncoderOutput = EncoderOutputOf(c), Residual = residual } });
        }
        foreach (var a in cross) _trace.Note("Blocks", $"cross-attention {a.CoreNodes[^1].Describe()} lies in no block (between no self-attention and its FFN)");
        return result;
    }
}
