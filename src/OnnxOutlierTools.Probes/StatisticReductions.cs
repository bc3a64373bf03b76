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
/// ascending (the upper median for even C, the median for odd C).</item>
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
        // Token statistics reduce the last axis and are flattened to [N] (N = B*S, row-major): any rank works, and the
        // output's declared shape has a known rank even when the graph does not say x's. Channel statistics reduce axis 0
        // of the [N, C] view.
        var rows = ops.Op("Concat", [ops.Int64s(-1), c], Attr.Int("axis", 0));
        Value Rows(Value v) => ops.Op("Reshape", v, rows);
        var abs = ops.Op("Abs", xf);
        var square = ops.Op("Mul", xf, xf);
        var above = ops.Cast(ops.Op("Greater", abs, ops.FloatScalar(settings.AboveThreshold)), TensorDataType.Float);
        var flat = Rows(xf);

        var medianK = channels is long cs ? ops.Int64s(cs - cs / 2) : ops.Op("Sub", c, ops.Op("Div", c, ops.Int64s(2)));
        var (topHalf, _) = ops.TopK(abs, medianK, -1, sorted: false);

        var tokenMax = ops.Reshape(ops.Reduce("ReduceMax", abs, [-1]), -1);
        var (topValues, topIndices) = GlobalTopK(ops, abs, tokenMax, c, settings.TopK);

        return new Dictionary<ProbeStatistic, Value>
        {
            [ProbeStatistic.ChannelMax] = ops.Reduce("ReduceMax", flat, [0]),
            [ProbeStatistic.ChannelMin] = ops.Reduce("ReduceMin", flat, [0]),
            [ProbeStatistic.ChannelSum] = ops.Reduce("ReduceSum", flat, [0]),
            // ReduceSum of the squares, not ReduceSumSquare: ORT 1.32's CPU ReduceSumSquare over axis 0 took about 15x
            // the time of ReduceSum on the same [1024, C] tensors (profiled on a dim-1024 decoder).
            [ProbeStatistic.ChannelSumSquares] = ops.Reduce("ReduceSum", Rows(square), [0]),
            [ProbeStatistic.ChannelSumFourth] = ops.Reduce("ReduceSum", Rows(ops.Op("Mul", square, square)), [0]),
            [ProbeStatistic.ChannelAboveCount] = ops.Reduce("ReduceSum", Rows(above), [0]),
            [ProbeStatistic.TokenMaxAbs] = tokenMax,
            [ProbeStatistic.TokenMedianAbs] = ops.Reshape(ops.Reduce("ReduceMin", topHalf, [-1]), -1),
            [ProbeStatistic.TokenArgMaxChannel] = ops.Reshape(ops.Op("ArgMax", [abs], Attr.Int("axis", -1), Attr.Int("keepdims", 0)), -1),
            [ProbeStatistic.TopKAbs] = topValues,
            [ProbeStatistic.TopKIndex] = topIndices,
            [ProbeStatistic.TopKValue] = ops.Op("Gather", [ops.Reshape(xf, -1), topIndices], Attr.Int("axis", 0)),
        };
    }

    /// <summary>The k = min(topK, numel) largest |x| without one TopK over the whole tensor (a single-threaded pass over
    /// millions of elements): every one of the k largest lies in a token whose max |x| is among the k largest token maxima
    /// (at most k tokens have a max at or above the k-th largest element), so TopK picks those k' = min(k, N) tokens by
    /// their max, Gather takes their rows, and a TopK over the k' x C values finds the k; the flat index is
    /// token * C + channel. On ties any of the tied elements may be chosen (the values are the same). Values descending,
    /// int64 flat row-major indices.</summary>
    private static (Value Values, Value Indices) GlobalTopK(ProbeOps ops, Value abs, Value tokenMax, Value c, int topK)
    {
        var rows = ops.Op("Reshape", abs, ops.Op("Concat", [ops.Int64s(-1), c], Attr.Int("axis", 0)));   // [N, C]
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
