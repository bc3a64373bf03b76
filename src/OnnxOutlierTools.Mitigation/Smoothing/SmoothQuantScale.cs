using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace OnnxOutlierTools.Mitigation.Smoothing;

/// <summary>SmoothQuant's per-input-channel migration scale (Xiao et al. 2022; SCIENCE.md 2.2):
/// <c>s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)</c>, both maxima clamped to at least 1e-5, where max|W_j| is the max
/// over input channel j of every linear that reads X (jointly). Dividing X by s and multiplying W's input rows by s
/// leaves X W unchanged.</summary>
public static class SmoothQuantScale
{
    public const double MinMagnitude = 1e-5;

    public static double[] Compute(ReadOnlySpan<double> activationAbsMax, ReadOnlySpan<double> weightAbsMax, double alpha)
    {
        if (activationAbsMax.Length != weightAbsMax.Length)
            throw new ArgumentException($"{activationAbsMax.Length} activation maxima for {weightAbsMax.Length} weight rows");
        if (!(alpha is >= 0 and <= 1)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "alpha must be in [0, 1]");
        var s = new double[activationAbsMax.Length];
        for (int j = 0; j < s.Length; j++)
        {
            double x = Math.Max(Finite(activationAbsMax[j]), MinMagnitude), w = Math.Max(Finite(weightAbsMax[j]), MinMagnitude);
            s[j] = Math.Pow(x, alpha) / Math.Pow(w, 1 - alpha);
        }
        return s;
    }

    private static double Finite(double v) => double.IsFinite(v) ? Math.Abs(v) : 0;

    /// <summary>max |W| over each input channel of a linear's weight (rows of an [in, out] weight, columns of an [out, in]
    /// one), read chunk by chunk (external data is never loaded whole).</summary>
    public static double[] InputChannelAbsMax(Tensor weight, WeightLayout layout)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.Dims.Count != 2) throw new ArgumentException($"a linear weight is 2-D, not [{string.Join(",", weight.Dims)}]", nameof(weight));
        // A weight an earlier fold scaled along its input channels only: its maxima follow from the source's (see
        // ScaledTensor.ChannelMagnitudes), so the scaled weight is not computed twice (here and when it is saved).
        if (weight is Folding.ScaledTensor scaled
            && scaled.ChannelMagnitudes(InputChannelAbsMax(scaled.Source, layout), rowChannels: layout == WeightLayout.InOut) is { } derived)
            return derived;
        return weight.DataType switch
        {
            TensorDataType.Float => PatternMaxima<uint>(weight, layout, 0x7FFF_FFFFu, 0x7F80_0000u, b => BitConverter.UInt32BitsToSingle(b)),
            TensorDataType.Float16 => PatternMaxima<ushort>(weight, layout, 0x7FFF, 0x7C00, b => (double)BitConverter.UInt16BitsToHalf(b)),
            TensorDataType.BFloat16 => PatternMaxima<ushort>(weight, layout, 0x7FFF, 0x7F80, b => BitConverter.UInt32BitsToSingle((uint)b << 16)),
            _ => throw new NotSupportedException($"{weight.DataType.OnnxName()} weights are not floating point"),
        };
    }

    /// <summary>Whole rows per read, maxima of the magnitude bit patterns (<see cref="MagnitudeBits"/>): an [in, out]
    /// weight's channel is a row, an [out, in] weight's a column (an element-wise running maximum over the rows).</summary>
    private static double[] PatternMaxima<T>(Tensor weight, WeightLayout layout, T magnitudeMask, T infinity, Func<T, double> toDouble)
        where T : unmanaged, System.Numerics.IBinaryInteger<T>
    {
        long rows = weight.Dims[0];
        int columns = checked((int)weight.Dims[1]);
        if (columns == 0 || rows == 0) return new double[layout == WeightLayout.InOut ? rows : columns];
        var rowMax = layout == WeightLayout.InOut ? new double[rows] : null;
        var columnMax = layout == WeightLayout.OutIn ? new T[columns] : null;
        int rowsPerRead = (int)Math.Max(1, Math.Min(rows, (1 << 21) / columns));
        T[] buffer = System.Buffers.ArrayPool<T>.Shared.Rent(rowsPerRead * columns);
        try
        {
            for (long row = 0; row < rows; row += rowsPerRead)
            {
                int n = (int)Math.Min(rowsPerRead, rows - row);
                var chunk = buffer.AsSpan(0, n * columns);
                // Raw bytes: the patterns, not the values (a typed view of FLOAT16 as UInt16 is refused by design).
                weight.CopyTo(row * columns * System.Runtime.CompilerServices.Unsafe.SizeOf<T>(), System.Runtime.InteropServices.MemoryMarshal.AsBytes(chunk));
                for (int r = 0; r < n; r++)
                {
                    var values = chunk.Slice(r * columns, columns);
                    if (rowMax is not null) rowMax[row + r] = toDouble(MagnitudeBits.Max<T>(values, magnitudeMask, infinity));
                    else MagnitudeBits.MaxInto<T>(values, columnMax, magnitudeMask, infinity);
                }
            }
        }
        finally { System.Buffers.ArrayPool<T>.Shared.Return(buffer); }
        return rowMax ?? columnMax!.Select(toDouble).ToArray();
    }

    /// <summary>Elements [start, start + destination.Length) of a FLOAT, FLOAT16 or BFLOAT16 tensor as float.</summary>
    internal static void ReadSingles(Tensor tensor, long start, Span<float> destination)
    {
        switch (tensor.DataType)
        {
            case TensorDataType.Float: tensor.CopyTo(start, destination); break;
            case TensorDataType.Float16:
            {
                var half = System.Buffers.ArrayPool<Half>.Shared.Rent(destination.Length);
                try
                {
                    tensor.CopyTo<Half>(start, half.AsSpan(0, destination.Length));
                    FloatConversion.ToSingle(half.AsSpan(0, destination.Length), destination);
                }
                finally { System.Buffers.ArrayPool<Half>.Shared.Return(half); }
                break;
            }
            case TensorDataType.BFloat16:
            {
                var bf = System.Buffers.ArrayPool<BFloat16>.Shared.Rent(destination.Length);
                try
                {
                    tensor.CopyTo<BFloat16>(start, bf.AsSpan(0, destination.Length));
                    FloatConversion.ToSingle(bf.AsSpan(0, destination.Length), destination);
                }
                finally { System.Buffers.ArrayPool<BFloat16>.Shared.Return(bf); }
                break;
            }
            default: throw new NotSupportedException($"{tensor.DataType.OnnxName()} weights are not floating point");
        }
    }
}
