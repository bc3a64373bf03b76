using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Quantization.Int4;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Quantization;

/// <summary>The tests' independent float64 side of int4: the quantization formula written out per block (for comparing with
/// the kernel), and decoders that read the int4 initializers a quantized model holds (MatMulNBits' packed B, scales and zero
/// points; the opset-21 INT4/UINT4 weight with its blocked scales) back into a dequantized [N, K] matrix.</summary>
internal static class Int4Reference
{
    /// <summary>Dequantized [N, K] (row n = output channel n) of <paramref name="w"/> ([K, N] when inputAxis is 0, else [N, K]),
    /// by the formula: symmetric scale = w_e / -8 (w_e the block's element of largest magnitude), asymmetric
    /// (max(w,0) - min(w,0)) / 15 with zero point round(-min / scale); both scales rounded to <paramref name="scaleType"/>;
    /// code = clamp(round_half_even(w / scale) + zp, 0, 15); value = (code - zp) * scale.</summary>
    public static double[,] Dequantize(float[] w, int rows, int columns, int inputAxis, int blockSize, bool symmetric, TensorDataType scaleType)
    {
        int k = inputAxis == 0 ? rows : columns, n = inputAxis == 0 ? columns : rows;
        var result = new double[n, k];
        for (int c = 0; c < n; c++)
        {
            for (int b0 = 0; b0 < k; b0 += blockSize)
            {
                int len = Math.Min(blockSize, k - b0);
                double At(int i) => inputAxis == 0 ? w[(b0 + i) * columns + c] : w[c * columns + b0 + i];
                double scale, zp;
                if (symmetric)
                {
                    double extreme = 0;
                    for (int i = 0; i < len; i++) if (Math.Abs(At(i)) > Math.Abs(extreme)) extreme = At(i);
                    scale = Stored(extreme / -8, scaleType);
                    zp = 8;
                }
                else
                {
                    double min = 0, max = 0;
                    for (int i = 0; i < len; i++) { min = Math.Min(min, At(i)); max = Math.Max(max, At(i)); }
                    scale = Stored((max - min) / 15, scaleType);
                    zp = scale == 0 ? 0 : Math.Clamp(Math.Round(-min / scale, MidpointRounding.ToEven), 0, 15);
                }
                for (int i = 0; i < len; i++)
                {
                    double code = scale == 0 ? zp : Math.Clamp(Math.Round(At(i) / scale, MidpointRounding.ToEven) + zp, 0, 15);
                    result[c, b0 + i] = (code - zp) * scale;
                }
            }
        }
        return result;
    }

    private static double Stored(double v, TensorDataType type) => type switch
    {
        TensorDataType.Float16 => (double)(Half)(float)v,
        _ => (float)v,
    };

    /// <summary>Reads MatMulNBits' B [N, blocks, blockSize/2], scales [N, blocks] and zero points [N, ceil(blocks/2)] (default 8).</summary>
    public static double[,] DecodeNBits(Tensor b, Tensor scales, Tensor? zeroPoints, int k, int blockSize)
    {
        int n = (int)b.Dims[0], blocks = (int)b.Dims[1];
        Assert.Equal(blockSize / 2, (int)b.Dims[2]);
        Assert.Equal((k + blockSize - 1) / blockSize, blocks);
        var bytes = b.Bytes.ToArray();
        var s = scales.ToSingleArray();
        Assert.Equal(n * blocks, s.Length);
        var z = zeroPoints?.Bytes.ToArray();
        if (z is not null) Assert.Equal(n * ((blocks + 1) / 2), z.Length);
        var result = new double[n, k];
        for (int c = 0; c < n; c++)
            for (int j = 0; j < k; j++)
            {
                int block = j / blockSize, within = j % blockSize;
                int code = (bytes[(c * blocks + block) * (blockSize / 2) + within / 2] >> (within % 2 * 4)) & 0xF;
                int zp = z is null ? 8 : (z[c * ((blocks + 1) / 2) + block / 2] >> (block % 2 * 4)) & 0xF;
                result[c, j] = (code - zp) * (double)s[c * blocks + block];
            }
        return result;
    }

    /// <summary>Reads an opset-21 blocked weight (INT4 or UINT4, [K, N] with axis 0 or [N, K] with axis 1) back to [N, K].</summary>
    public static double[,] DecodeBlocked(Tensor q, Tensor scale, Tensor? zeroPoint, int axis, int blockSize)
    {
        int rows = (int)q.Dims[0], columns = (int)q.Dims[1];
        int k = axis == 0 ? rows : columns, n = axis == 0 ? columns : rows;
        var codes = new int[rows * columns];
        if (q.DataType == TensorDataType.Int4)
        {
            var v = new sbyte[codes.Length];
            Int4Packing.UnpackSigned(q.Bytes, v);
            for (int i = 0; i < v.Length; i++) codes[i] = v[i];
        }
        else
        {
            var v = new byte[codes.Length];
            Int4Packing.UnpackUnsigned(q.Bytes, v);
            for (int i = 0; i < v.Length; i++) codes[i] = v[i];
        }
        var s = scale.ToSingleArray();
        int[]? z = null;
        if (zeroPoint is not null)
        {
            var v = new byte[zeroPoint.ElementCount];
            Int4Packing.UnpackUnsigned(zeroPoint.Bytes, v);
            z = v.Select(x => (int)x).ToArray();
        }
        var result = new double[n, k];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < columns; c++)
            {
                // Scale index: the blocked axis divided by the block size.
                int si = axis == 0 ? (r / blockSize) * columns + c : r * ((columns + blockSize - 1) / blockSize) + c / blockSize;
                double value = (codes[r * columns + c] - (z?[si] ?? 0)) * (double)s[si];
                if (axis == 0) result[c, r] = value; else result[r, c] = value;
            }
        return result;
    }

    /// <summary>The dequantized weight of <paramref name="weightName"/> in a model <see cref="Int4Quantizer"/> wrote, as [N, K].</summary>
    public static double[,] DecodeFromModel(Model model, string weightName, Int4Settings settings)
    {
        var g = model.Graph;
        Tensor? Init(string name) => g.FindInitializer(name)?.ConstValue;
        if (settings.Format == Int4Format.MatMulNBits)
        {
            var b = Init(weightName + ".q4") ?? throw new InvalidOperationException($"no {weightName}.q4");
            var node = g.Nodes.Single(nd => nd.Is("MatMulNBits", "com.microsoft") && nd.Inputs[1]!.Name == weightName + ".q4");
            Assert.Equal(4, node.GetInt("bits", 0));
            Assert.Equal(settings.BlockSize, node.GetInt("block_size", 0));
            Assert.Equal(settings.AccuracyLevel, node.GetInt("accuracy_level", -1));
            return DecodeNBits(b, Init(weightName + ".q4_scales")!, Init(weightName + ".q4_zero_points"), (int)node.GetInt("K", 0), settings.BlockSize);
        }
        var q = Init(weightName + ".int4") ?? throw new InvalidOperationException($"no {weightName}.int4");
        var dq = g.Nodes.Single(nd => nd.Is("DequantizeLinear") && nd.Inputs[0]!.Name == weightName + ".int4");
        Assert.Equal(settings.BlockSize, dq.GetInt("block_size", 0));
        return DecodeBlocked(q, Init(weightName + ".int4_scale")!, Init(weightName + ".int4_zero_point"), (int)dq.GetInt("axis", 0), settings.BlockSize);
    }
}
