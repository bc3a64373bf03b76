using OnnxOutlierTools.Tensors;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace OnnxOutlierTools.Quantization.Int4;

/// <summary>The int4 kernel: one output channel's input-channel values, block by block, to unsigned 4-bit codes (0..15), one
/// scale and one zero point per block, with dequantized value <c>(code - zeroPoint) * scale</c>. Symmetric blocks use the
/// implied zero point 8 (MatMulNBits' default; the signed INT4 code is code - 8). The scale is rounded to the stored type first
/// and the codes are computed against that stored scale in float64, so the dequantized weight is the nearest representable one
/// (up to the clamp at the range ends). A short last block (K not a multiple of the block size) uses its own elements only.
/// <para>A non-finite weight is refused (<see cref="Int4QuantizationException"/>): no scale represents it.</para></summary>
public static class Int4BlockCodec
{
    public const int SymmetricZeroPoint = 8;

    /// <summary>Quantizes <paramref name="values"/> (one channel, K values) into <paramref name="codes"/> (K),
    /// <paramref name="scales"/> and <paramref name="zeroPoints"/> (ceil(K / blockSize) each).</summary>
    public static void Quantize(ReadOnlySpan<float> values, int blockSize, bool symmetric, TensorDataType scaleType,
        Span<byte> codes, Span<float> scales, Span<byte> zeroPoints)
    {
        int blocks = (values.Length + blockSize - 1) / blockSize;
        if (codes.Length < values.Length || scales.Length < blocks || zeroPoints.Length < blocks)
            throw new ArgumentException($"buffers too small for {values.Length} values in {blocks} blocks");
        Parameters(values, blockSize, symmetric, scaleType, scales, zeroPoints);
        // code = clamp(round_half_even(w / scale) + zp, 0, 15), vectorized in float64 over the whole channel: the divisor and
        // the zero point are expanded per element (a zero scale divides by 1 and is overwritten by its zero point below).
        var pool = System.Buffers.ArrayPool<double>.Shared;
        double[] w = pool.Rent(values.Length), divisor = pool.Rent(values.Length), zero = pool.Rent(values.Length);
        try
        {
            var x = w.AsSpan(0, values.Length);
            var d = divisor.AsSpan(0, values.Length);
            var z = zero.AsSpan(0, values.Length);
            TensorPrimitives.ConvertChecked<float, double>(values, x);
            for (int b = 0; b < blocks; b++)
            {
                int start = b * blockSize, n = Math.Min(blockSize, values.Length - start);
                d.Slice(start, n).Fill(scales[b] == 0 ? 1 : scales[b]);
                z.Slice(start, n).Fill(zeroPoints[b]);
            }
            TensorPrimitives.Divide(x, d, x);
            TensorPrimitives.Round(x, MidpointRounding.ToEven, x);
            TensorPrimitives.Add(x, z, x);
            TensorPrimitives.Max(x, 0.0, x);
            TensorPrimitives.Min(x, 15.0, x);
            TensorPrimitives.ConvertTruncating<double, byte>(x, codes[..values.Length]);
            for (int b = 0; b < blocks; b++)
                if (scales[b] == 0)
                {
                    int start = b * blockSize;
                    codes.Slice(start, Math.Min(blockSize, values.Length - start)).Fill(zeroPoints[b]);
                }
        }
        finally
        {
            pool.Return(w);
            pool.Return(divisor);
            pool.Return(zero);
        }
    }

    /// <summary>The scales and zero points of <paramref name="values"/> only (what <see cref="Quantize"/> would give).</summary>
    public static void Parameters(ReadOnlySpan<float> values, int blockSize, bool symmetric, TensorDataType scaleType, Span<float> scales, Span<byte> zeroPoints)
    {
        int blocks = (values.Length + blockSize - 1) / blockSize;
        for (int b = 0; b < blocks; b++)
        {
            var block = values.Slice(b * blockSize, Math.Min(blockSize, values.Length - b * blockSize));
            (scales[b], zeroPoints[b]) = symmetric ? SymmetricParameters(block, scaleType) : AsymmetricParameters(block, scaleType);
        }
    }

    /// <summary>scale = w_e / -8 (w_e: the element of largest magnitude, the first on ties), rounded to the stored type.</summary>
    public static (float Scale, byte ZeroPoint) SymmetricParameters(ReadOnlySpan<float> block, TensorDataType scaleType)
    {
        float extreme = 0;
        foreach (float v in block)
        {
            if (!float.IsFinite(v)) throw new Int4QuantizationException($"a weight value is {v}; int4 needs finite weights");
            if (Math.Abs(v) > Math.Abs(extreme)) extreme = v;
        }
        return (RoundToStored(extreme / -8.0, scaleType), SymmetricZeroPoint);
    }

    /// <summary>scale = (max(w, 0) - min(w, 0)) / 15 rounded to the stored type; zero point round(-min / scale) in [0, 15].</summary>
    public static (float Scale, byte ZeroPoint) AsymmetricParameters(ReadOnlySpan<float> block, TensorDataType scaleType)
    {
        double min = 0, max = 0;
        foreach (float v in block)
        {
            if (!float.IsFinite(v)) throw new Int4QuantizationException($"a weight value is {v}; int4 needs finite weights");
            if (v < min) min = v;
            if (v > max) max = v;
        }
        float scale = RoundToStored((max - min) / 15.0, scaleType);
        if (scale == 0) return (0, 0);
        double zero = Math.Round(-min / scale, MidpointRounding.ToEven);
        return (scale, (byte)Math.Clamp(zero, 0, 15));
    }

    /// <summary>The value as the scale tensor stores it (FLOAT, FLOAT16 or BFLOAT16), back as float.</summary>
    public static float RoundToStored(double value, TensorDataType type) => type switch
    {
        TensorDataType.Float => (float)value,
        TensorDataType.Float16 => (float)(Half)(float)value,
        TensorDataType.BFloat16 => (float)(BFloat16)(float)value,
        _ => throw new NotSupportedException($"int4 scales are FLOAT, FLOAT16 or BFLOAT16, not {type.OnnxName()}"),
    };
}
