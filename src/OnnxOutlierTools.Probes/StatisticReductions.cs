using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Probes;

/// <summary>The in-graph reductions of one probe point (shapes as <see cref="ProbeStatistic"/> documents). Everything
/// runs in FLOAT: the probed tensor is cast first when it is not FLOAT (x^4 of a massive activation overflows fp16).
/// <list type="bullet">
/// <item>Channel statistics reduce over every axis but the last (the token axes): ReduceMax, ReduceMin, ReduceSum of x,
/// ReduceSum of x*x and of (x*x)^2, ReduceSum of Cast(|x| &gt; threshold).</item>
/// <item>Token statistics reduce over the last axis: ReduceMax(|x|), ArgMax(|x|) (the first channel on ties), and the
/// median: TopK(|x|, k = C - floor(C/2), largest, unsorted) then ReduceMin of those k, i.e. element floor(C/2) of |x| sorted
/// ascending (the upper median for even C, the median for odd C), taken over <see cref="ProbeSettings.MedianChannels"/>
/// strided channels when C is larger (then C above is that sample's size).</item>
/// <item>The global top-k: k = min(<see cref="ProbeSettings.TopK"/>, numel) largest |x| (found among the k tokens with
/// the largest max |x|, see <see cref="GlobalTopK"/>), with the flat row-major indices and the signed values gathered
/// from x.</item>
/// <item>Attention mass: probabilities [B, H, S, T] sliced to the first P = min(positions, T) keys and summed over the
/// S queries: [B, H, P].</item>
/// </list>
/// Any rank works: token statistics are flattened to [N] tokens, channel statistics reduce an [N, C] view.</summary>
internal static class StatisticReductions
{
    /// <param name="channels">The channel count when the roles know it (then k and the [N, C] view are constants).</param>
    public static Dictionary<ProbeStatistic, Value> Activation(ProbeOps ops, Value x, long? channels, ProbeSettings settings)
    {
        var xf = ops.Float(x);
        channels ??= x.Shape is { Count: > 0 } s ? s[^1].Value : null;
        var c = channels is long known ? ops.Int64s(known) : ops.Dim(xf, -1);
        // Everything works on the [N, C] view (N = B*S tokens, row-major): any rank works, channel statistics reduce axis
        // 0 and token statistics axis 1 straight to [N], and the outputs' declared shapes have a known rank even when the
        // graph does not say x's. Few nodes per point matter: ORT's per-node cost is a visible part of a probed run.
        var rows = channels is long cc ? ops.Int64s(-1, cc) : ops.Op("Concat", [ops.Int64s(-1), c], Attr.Int("axis", 0));
        var flat = ops.Op("Reshape", xf, rows);
        var abs = ops.Op("Abs", flat);
        var square = ops.Op("Mul", flat, flat);
        var above = ops.Cast(ops.Op("Greater", abs, ops.FloatScalar(settings.AboveThreshold)), TensorDataType.Float);
        var topHalf = MedianSelection(ops, abs, channels, c, settings.MedianChannels);
        var tokenMax = ops.Reduce("ReduceMax", abs, [-1]);
        var (topValues, topIndices) = GlobalTopK(ops, abs, tokenMax, c, settings.TopK);

        return new Dictionary<ProbeStatistic, Value>
        {
            [ProbeStatistic.ChannelMax] = ops.Reduce("ReduceMax", flat, [0]),
            [ProbeStatistic.ChannelMin] = ops.Reduce("ReduceMin", flat, [0]),
            [ProbeStatistic.ChannelSum] = ops.Reduce("ReduceSum", flat, [0]),
            // ReduceSum of the squares, not ReduceSumSquare: ORT 1.32's CPU ReduceSumSquare over axis 0 took about 15x
            // the time of ReduceSum on the same [1024, C] tensors (profiled on a dim-1024 decoder).
            [ProbeStatistic.ChannelSumSquares] = ops.Reduce("ReduceSum", square, [0]),
            [ProbeStatistic.ChannelSumFourth] = ops.Reduce("ReduceSum", ops.Op("Mul", square, square), [0]),
            [ProbeStatistic.ChannelAboveCount] = ops.Reduce("ReduceSum", above, [0]),
            [ProbeStatistic.TokenMaxAbs] = tokenMax,
            [ProbeStatistic.TokenMedianAbs] = ops.Reduce("ReduceMin", topHalf, [-1]),
            [ProbeStatistic.TokenArgMaxChannel] = ops.Op("ArgMax", [abs], Attr.Int("axis", -1), Attr.Int("keepdims", 0)),
            [ProbeStatistic.TopKAbs] = topValues,
            [ProbeStatistic.TopKIndex] = topIndices,
            [ProbeStatistic.TopKValue] = ops.Op("Gather", [ops.Reshape(flat, -1), topIndices], Attr.Int("axis", 0)),
        };
    }

    /// <summary>The upper half of |x| per token (its minimum is the median): over every channel, or, when the channel
    /// count C is known and above <paramref name="sample"/>, over channels 0, s, 2s, ... with s = floor(C / sample)
    /// (ceil(C / s) channels: a strided Slice, cheaper than a Gather).</summary>
    private static Value MedianSelection(ProbeOps ops, Value abs, long? channels, Value c, int sample)
    {
        if (channels is long cs && sample > 0 && cs > sample)
        {
            long step = cs / sample, taken = (cs + step - 1) / step;
            var sampled = ops.Op("Slice", abs, ops.Int64s(0), ops.Int64s(cs), ops.Int64s(-1), ops.Int64s(step));
            return ops.TopK(sampled, ops.Int64s(taken - taken / 2), -1, sorted: false).Values;
        }
        var k = channels is long known ? ops.Int64s(known - known / 2) : ops.Op("Sub", c, ops.Op("Div", c, ops.Int64s(2)));
        return ops.TopK(abs, k, -1, sorted: false).Values;
    }

    /// <summary>The k = min(topK, numel) largest |x| without one TopK over the whole tensor (a single-threaded pass over
    /// millions of elements): every one of the k largest lies in a token whose max |x| is among the k largest token maxima
    /// (at most k tokens have a max at or above the k-th largest element), so TopK picks those k' = min(k, N) tokens by
    /// their max, Gather takes their rows, and a TopK over the k' x C values finds the k; the flat index is
    /// token * C + channel. On ties any of the tied elements may be chosen (the values are the same). Values descending,
    /// int64 flat row-major indices.</summary>
    private static (Value Values, Value Indices) GlobalTopK(ProbeOps ops, Value rows, Value tokenMax, Value c, int topK)
    {
        var tokenCount = ops.Reshape(ops.Op("Size", tokenMax), 1);
        var (_, tokens) = ops.TopK(tokenMax, Min(ops, tokenCount, topK), 0);                                // [k']
        var candidates = ops.Reshape(ops.Op("Gather", [rows, tokens], Attr.Int("axis", 0)), -1);             // [k' * C]
        var k = Min(ops, ops.Reshape(ops.Op("Size", candidates), 1), topK);
        var (values, positions) = ops.TopK(candidates, k, 0);                                               // [k]
        var token = ops.Op("Gather", [tokens, ops.Op("Div", positions, c)], Attr.Int("axis", 0));
        var channel = ops.Op("Mod", positions, c);
        return (values, ops.Op("Add", ops.Op("Mul", token, c), channel));
    }

    /// <summary>min(a, b) of a [1] int64 and a constant, as a [1] int64 (Min takes int64 only from opset 12).</summary>
    private static Value Min(ProbeOps ops, Value a, long b) =>
        ops.Reduce("ReduceMin", ops.Op("Concat", [a, ops.Int64s(b)], Attr.Int("axis", 0)), [0], keepDims: true);

    /// <summary>[B, H, S, T] (or [B, G1, G2, S, T] with <paramref name="queryAxis"/> 3) -> sum over queries of the first
    /// <paramref name="positions"/> keys.</summary>
    public static Value AttentionMass(ProbeOps ops, Value probabilities, int positions, long queryAxis = 2)
    {
        var p = ops.Float(probabilities);
        long keyAxis = queryAxis + 1;
        var first = ops.Slice(p, [0], [positions], [keyAxis]);
        return ops.Reduce("ReduceSum", first, [queryAxis]);
    }
}
