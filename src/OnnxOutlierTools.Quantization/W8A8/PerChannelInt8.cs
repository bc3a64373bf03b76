using System.Buffers;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using OnnxOutlierTools.Quantization.Common;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Quantization.W8A8;

/// <summary>Symmetric int8 per output channel (SCIENCE.md 3): for channel c, s_c = max_i |w_ic| / 127 (computed in fp64, stored
/// as fp32, the type DequantizeLinear multiplies in), q = round_half_even(w / s_c) clamped to [-127, 127] (computed in fp64 from
/// the fp32 s_c, so DequantizeLinear's q * s_c is the nearest grid point to w). A channel of zeros gets s = 1 (its q are 0).
/// NaN weights are left out of the maxima and quantize to 0; infinities saturate. The weight is read twice, chunk by chunk
/// (maxima, then the int8 bytes as a save writes them): nothing of its size is held in memory.</summary>
public static class PerChannelInt8
{
    public const int QMax = 127;

    /// <summary>The scale of each output channel of a 2-D weight: along <paramref name="channelAxis"/> (1: an [in, out]
    /// weight's columns, 0: an [out, in] weight's rows).</summary>
    public static float[] Scales(Tensor weight, int channelAxis)
    {
        var max = ChannelAbsMax(weight, channelAxis);
        var scales = new float[max.Length];
        for (int c = 0; c < max.Length; c++) scales[c] = ScaleOf(max[c]);
        return scales;
    }

    /// <summary>s = max / 127 in fp64, rounded once to fp32; 1 for a zero (or non-finite) maximum.</summary>
    public static float ScaleOf(double absMax)
    {
        if (!(absMax > 0) || !double.IsFinite(absMax)) return 1f;
        float s = (float)(absMax / QMax);
        return s > 0 ? s : float.Epsilon;
    }

    /// <summary>q = round_half_even(w / s) in fp64, clamped to [-127, 127]; NaN -> 0.</summary>
    public static sbyte Quantize(float w, float scale)
    {
        if (float.IsNaN(w)) return 0;
        double q = Math.Round(w / (double)scale, MidpointRounding.ToEven);
        return (sbyte)Math.Clamp(q, -QMax, QMax);
    }

    /// <summary>max |w| per channel (NaN skipped), read in row chunks.</summary>
    public static double[] ChannelAbsMax(Tensor weight, int channelAxis)
    {
        var (rows, columns) = Matrix(weight, channelAxis);
        var result = new double[channelAxis == 1 ? columns : rows];
        if (rows == 0 || columns == 0) return result;
        int rowsPerRead = (int)Math.Max(1, Math.Min(rows, (1 << 20) / columns));
        float[] buffer = ArrayPool<float>.Shared.Rent(rowsPerRead * columns);
        float[] abs = ArrayPool<float>.Shared.Rent(columns);
        float[] columnMax = channelAxis == 1 ? new float[columns] : [];
        try
        {
            for (long row = 0; row < rows; row += rowsPerRead)
            {
                int n = (int)Math.Min(rowsPerRead, rows - row);
                FloatElements.Read(weight, row * columns, buffer.AsSpan(0, n * columns));
                for (int r = 0; r < n; r++)
                {
                    var values = buffer.AsSpan(r * columns, columns);
                    var a = abs.AsSpan(0, columns);
                    TensorPrimitives.Abs(values, a);
                    // Max propagates NaN: a row holding one is cleaned first (NaN weights are left out of the maxima).
                    if (float.IsNaN(TensorPrimitives.Max(a))) foreach (ref float v in a) if (float.IsNaN(v)) v = 0;
                    if (channelAxis == 1) TensorPrimitives.Max(columnMax, a, columnMax);
                    else result[row + r] = TensorPrimitives.Max(a);
                }
            }
            if (channelAxis == 1) for (int c = 0; c < columns; c++) result[c] = columnMax[c];
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
            ArrayPool<float>.Shared.Return(abs);
        }
        return result;
    }

    internal static (long Rows, int Columns) Matrix(Tensor weight, int channelAxis)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.Dims.Count != 2) throw new ArgumentException($"a linear weight is 2-D, not [{string.Join(",", weight.Dims)}]", nameof(weight));
        if (channelAxis is not (0 or 1)) throw new ArgumentOutOfRangeException(nameof(channelAxis), channelAxis, "axis 0 or 1");
        if (!FloatElements.Supports(weight.DataType)) throw new NotSupportedException($"int8 quantization reads FLOAT, FLOAT16 or BFLOAT16 weights, not {weight.DataType.OnnxName()}");
        return (weight.Dims[0], checked((int)weight.Dims[1]));
    }
}

/// <summary>The int8 weight of <see cref="PerChannelInt8"/> as a lazy tensor: its bytes are computed from the float source when
/// read (the save streams them chunk by chunk), same shape as the source.</summary>
public sealed class Int8ChannelTensor : Tensor
{
    private readonly Tensor _source;
    private readonly float[] _scales;
    private readonly int _axis;
    private readonly int _columns;

    public Int8ChannelTensor(Tensor source, float[] scales, int channelAxis) : base(TensorDataType.Int8, source.Dims)
    {
        var (rows, columns) = PerChannelInt8.Matrix(source, channelAxis);
        if (scales.Length != (channelAxis == 1 ? columns : rows)) throw new ArgumentException($"{scales.Length} scales for axis {channelAxis} of [{string.Join(",", source.Dims)}]");
        _source = source;
        _scales = scales;
        _axis = channelAxis;
        _columns = columns;
    }

    public override TensorStorage Storage => TensorStorage.Memory;

    public override ReadOnlySpan<byte> GetBytes(long offset, int length)
    {
        var chunk = new byte[length];
        Read(offset, chunk);
        return chunk;
    }

    public override void CopyTo(Stream destination)
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(4 << 20);
        try
        {
            for (long offset = 0; offset < ByteLength; offset += buffer.Length)
            {
                int n = (int)Math.Min(buffer.Length, ByteLength - offset);
                Read(offset, buffer.AsSpan(0, n));
                destination.Write(buffer, 0, n);
            }
        }
        finally { ArrayPool<byte>.Shared.Return(buffer); }
    }

    protected override void Read(long offset, Span<byte> destination)
    {
        if (offset < 0 || offset + destination.Length > ByteLength) throw new ArgumentOutOfRangeException(nameof(offset));
        float[] values = ArrayPool<float>.Shared.Rent(Math.Min(destination.Length, 1 << 18));
        try
        {
            for (int done = 0; done < destination.Length;)
            {
                int n = Math.Min(destination.Length - done, 1 << 18);
                long first = offset + done;
                var v = values.AsSpan(0, n);
                FloatElements.Read(_source, first, v);
                for (int i = 0; i < n; i++)
                {
                    long e = first + i;
                    float scale = _axis == 1 ? _scales[e % _columns] : _scales[e / _columns];
                    destination[done + i] = unchecked((byte)PerChannelInt8.Quantize(v[i], scale));
                }
                done += n;
            }
        }
        finally { ArrayPool<float>.Shared.Return(values); }
    }
}
