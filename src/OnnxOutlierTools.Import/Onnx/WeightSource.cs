using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Import.Onnx;

/// <summary>The weight tensors an ONNX writer places as initializers.</summary>
internal enum WeightRole
{
    /// <summary>[vocab, dim] (Gather table).</summary>
    Embedding,
    /// <summary>[dim].</summary>
    AttentionNorm,
    /// <summary>[dim, heads*head_size] (MatMul [in, out]).</summary>
    Q,
    /// <summary>[dim, kv_dim].</summary>
    K,
    /// <summary>[dim, kv_dim].</summary>
    V,
    /// <summary>[dim, heads*head_size + 2*kv_dim]: q, k and v columns side by side (genai's qkv_proj).</summary>
    Qkv,
    /// <summary>[heads*head_size, dim].</summary>
    O,
    /// <summary>[dim].</summary>
    FfnNorm,
    /// <summary>[dim, hidden].</summary>
    Gate,
    /// <summary>[dim, hidden].</summary>
    Up,
    /// <summary>[hidden, dim].</summary>
    Down,
    /// <summary>[dim].</summary>
    FinalNorm,
    /// <summary>[dim, vocab].</summary>
    LmHead,
}

/// <summary>Supplies weight tensors in ONNX layout (MatMul weights [in, out]) and in one float type.</summary>
internal abstract class WeightSource
{
    public abstract TensorDataType DataType { get; }

    /// <summary>The tensor for <paramref name="role"/> of layer <paramref name="layer"/> (-1 for model-level
    /// weights), of shape <paramref name="dims"/>. <paramref name="rotateHalf"/>: query/key output columns
    /// must be in rotate-half order (otherwise in the config's own RoPE layout).</summary>
    public abstract Tensor Get(WeightRole role, int layer, long[] dims, bool rotateHalf);

    /// <summary>The shape a role has for <paramref name="c"/>.</summary>
    public static long[] Dims(DecoderConfig c, WeightRole role)
    {
        long d = c.Dim, kv = c.KvDim, h = c.HiddenDim, v = c.VocabSize;
        return role switch
        {
            WeightRole.Embedding => [v, d],
            WeightRole.AttentionNorm or WeightRole.FfnNorm or WeightRole.FinalNorm => [d],
            WeightRole.Q => [d, d],
            WeightRole.K or WeightRole.V => [d, kv],
            WeightRole.Qkv => [d, d + 2 * kv],
            WeightRole.O => [d, d],
            WeightRole.Gate or WeightRole.Up => [d, h],
            WeightRole.Down => [h, d],
            WeightRole.LmHead => [d, v],
            _ => throw new ArgumentOutOfRangeException(nameof(role)),
        };
    }
}

/// <summary>Weights from <see cref="DecoderWeights"/>: transposed to [in, out], q/k rows permuted to
/// rotate-half order when asked, converted to the target float type.</summary>
internal sealed class DecoderWeightSource(DecoderWeights weights, TensorDataType dataType) : WeightSource
{
    public override TensorDataType DataType => dataType;

    public override Tensor Get(WeightRole role, int layer, long[] dims, bool rotateHalf)
    {
        var c = weights.Config;
        var expected = Dims(c, role);
        if (!expected.SequenceEqual(dims)) throw new InvalidOperationException($"{role} requested as [{string.Join(",", dims)}], expected [{string.Join(",", expected)}]");
        int d = c.Dim, kv = c.KvDim, h = c.HiddenDim;
        var l = layer >= 0 ? weights.Layers[layer] : null;
        float[] data = role switch
        {
            WeightRole.Embedding => weights.TokenEmbedding,
            WeightRole.AttentionNorm => l!.AttentionNorm,
            WeightRole.FfnNorm => l!.FfnNorm,
            WeightRole.FinalNorm => weights.FinalNorm,
            WeightRole.Q => Transpose(QueryRows(l!.Wq, c.Heads, rotateHalf), d, d),
            WeightRole.K => Transpose(QueryRows(l!.Wk, c.KvHeads, rotateHalf), kv, d),
            WeightRole.V => Transpose(l!.Wv, kv, d),
            WeightRole.Qkv => Transpose([.. QueryRows(l!.Wq, c.Heads, rotateHalf), .. QueryRows(l.Wk, c.KvHeads, rotateHalf), .. l.Wv], d + 2 * kv, d),
            WeightRole.O => Transpose(l!.Wo, d, d),
            WeightRole.Gate => Transpose(l!.W1, h, d),
            WeightRole.Up => Transpose(l!.W3, h, d),
            WeightRole.Down => Transpose(l!.W2, d, h),
            WeightRole.LmHead => Transpose(weights.Classifier, c.VocabSize, d),
            _ => throw new ArgumentOutOfRangeException(nameof(role)),
        };
        return ToTensor(data, dims, dataType);

        float[] QueryRows(float[] rows, int heads, bool wantRotateHalf) =>
            wantRotateHalf && c.RopeLayout == RopeLayout.InterleavedPairs
                ? Rope.InterleavedToRotateHalf(rows, heads, c.HeadSize, d)
                : rows;
    }

    /// <summary>[rows, cols] row-major -> [cols, rows] row-major.</summary>
    internal static float[] Transpose(float[] a, int rows, int cols)
    {
        var t = new float[a.Length];
        for (int r = 0; r < rows; r++)
            for (int col = 0; col < cols; col++)
                t[(long)col * rows + r] = a[(long)r * cols + col];
        return t;
    }

    internal static Tensor ToTensor(float[] data, long[] dims, TensorDataType type)
    {
        switch (type)
        {
            case TensorDataType.Float:
                return ArrayTensor.Create<float>(data, dims);
            case TensorDataType.Float16:
                var half = new Half[data.Length];
                FloatConversion.ToHalf(data, half);
                return ArrayTensor.Create<Half>(half, dims);
            default:
                throw new NotSupportedException($"weights of {type.OnnxName()}");
        }
    }
}
