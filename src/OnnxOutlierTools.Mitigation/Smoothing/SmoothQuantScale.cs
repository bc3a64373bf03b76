using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

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
        long rows = weight.Dims[0], columns = weight.Dims[1];
        var max = new double[layout == WeightLayout.InOut ? rows : columns];
        var buffer = new float[(int)Math.Min(weight.ElementCount, 1 << 20)];
        for (long start = 0; start < weight.ElementCount; start += buffer.Length)
        {
            int n = (int)Math.Min(buffer.Length, weight.ElementCount - start);
            ReadSingles(weight, start, buffer.AsSpan(0, n));
            for (int i = 0; i < n; i++)
            {
                long element = start + i;
                long channel = layout == WeightLayout.InOut ? element / columns : element % columns;
                double a = Math.Abs(buffer[i]);
                if (a > max[channel]) max[channel] = a;
            }
        }
        return max;
    }

    /// <summary>Elements [start, start + destination.Length) of a FLOAT, FLOAT16 or BFLOAT16 tensor as float.</summary>
    internal static void ReadSingles(Tensor tensor, long start, Span<float> destination)
    {
        switch (tensor.DataType)
        {
            case TensorDataType.Float: tensor.CopyTo(start, destination); break;
            case TensorDataType.Float16:
            {
                var half = new Half[destination.Length];
                tensor.CopyTo<Half>(start, half);
                FloatConversion.ToSingle(half, destination);
                break;
            }
            case TensorDataType.BFloat16:
            {
                var bf = new BFloat16[destination.Length];
                tensor.CopyTo<BFloat16>(start, bf);
                FloatConversion.ToSingle(bf, destination);
                break;
            }
            default: throw new NotSupportedException($"{tensor.DataType.OnnxName()} weights are not floating point");
        }
    }
}
