using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Mitigation.Fp16Safe;

/// <summary>Checks that a folded tensor is bit-exact: every element of the scaled view equals the source element times
/// its power-of-two factor, compared in float64 (where both sides are exact). A power of two rescales without rounding
/// unless an element overflows or becomes subnormal in the stored type; this finds such an element. Reads both tensors
/// chunk by chunk, so a large weight is never held in memory.</summary>
public static class ExactScaleCheck
{
    private const int ChunkElements = 1 << 18;

    /// <summary>Null when <paramref name="scaled"/> = <paramref name="source"/> * rowScale[r] * columnScale[c] exactly
    /// everywhere (rows and columns as <see cref="Folding.ScaledTensor"/> defines them); otherwise the first element that
    /// is not, in words.</summary>
    public static string? FirstInexact(Tensor source, Tensor scaled, IReadOnlyList<double>? rowScale, IReadOnlyList<double>? columnScale)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(scaled);
        if (source.ElementCount != scaled.ElementCount || source.DataType != scaled.DataType) throw new ArgumentException("the scaled tensor is not a view of the source");
        long columns = source.Dims.Count == 0 ? 1 : source.Dims[^1];
        if (columns == 0) return null;
        var a = new float[(int)Math.Min(ChunkElements, source.ElementCount)];
        var b = new float[a.Length];
        for (long start = 0; start < source.ElementCount; start += a.Length)
        {
            int n = (int)Math.Min(a.Length, source.ElementCount - start);
            Load(source, start, a.AsSpan(0, n));
            Load(scaled, start, b.AsSpan(0, n));
            for (int i = 0; i < n; i++)
            {
                long e = start + i, row = e / columns, column = e % columns;
                double factor = (rowScale?[(int)row] ?? 1) * (columnScale?[(int)column] ?? 1);
                double expected = a[i] * factor;
                if ((double)b[i] != expected && !(double.IsNaN(expected) && float.IsNaN(b[i])))
                    return $"element [{row}, {column}] = {a[i]:R} times {factor:R} is {expected:R}, stored as {b[i]:R} in {source.DataType.OnnxName()}";
            }
        }
        return null;
    }

    private static void Load(Tensor tensor, long element, Span<float> values)
    {
        switch (tensor.DataType)
        {
            case TensorDataType.Float:
                tensor.CopyTo(element, values);
                break;
            case TensorDataType.Float16:
                var half = new Half[values.Length];
                tensor.CopyTo<Half>(element, half);
                FloatConversion.ToSingle(half, values);
                break;
            case TensorDataType.BFloat16:
                var bf = new BFloat16[values.Length];
                tensor.CopyTo<BFloat16>(element, bf);
                FloatConversion.ToSingle(bf, values);
                break;
            default:
                throw new NotSupportedException($"{tensor.DataType.OnnxName()} is not a floating-point weight type");
        }
    }
}
