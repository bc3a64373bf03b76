using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Analysis;

/// <summary>A linear's weight read as float64 in [in, out] terms whatever its stored layout (fp32, fp16, bf16 and fp64
/// initializers; converted once to float32, which is exact for fp16/bf16).</summary>
internal sealed class WeightMatrix
{
    private readonly float[] _data;
    private readonly bool _outIn;

    private WeightMatrix(string name, float[] data, int rows, int columns, bool outIn)
    {
        Name = name;
        _data = data;
        Rows = rows;
        Columns = columns;
        _outIn = outIn;
    }

    public string Name { get; }
    /// <summary>Input features (rows of [in, out]).</summary>
    public int Rows { get; }
    /// <summary>Output features (columns of [in, out]).</summary>
    public int Columns { get; }

    /// <summary>W[row, column] in [in, out] terms.</summary>
    public double this[int row, int column] => _outIn ? _data[(long)column * Rows + row] : _data[(long)row * Columns + column];

    /// <summary>Reads the linear's weight, or says why it cannot be read (quantized, not a constant, not 2-D float).</summary>
    public static WeightMatrix? TryRead(LinearRole linear, out string? problem)
    {
        problem = null;
        if (linear.Quantized) { problem = $"{linear.Weight.Name} is quantized ({linear.Form.Name()}): weight-based analysis skipped"; return null; }
        var tensor = linear.Weight.ConstValue;
        if (tensor is null) { problem = $"{linear.Weight.Name} is not an initializer"; return null; }
        if (tensor.DataType is not (TensorDataType.Float or TensorDataType.Float16 or TensorDataType.BFloat16 or TensorDataType.Double))
        { problem = $"{linear.Weight.Name} is {tensor.DataType.OnnxName()}, not a float type"; return null; }
        if (tensor.Dims.Count != 2) { problem = $"{linear.Weight.Name} has shape [{string.Join(",", tensor.Dims)}], not 2-D"; return null; }
        bool outIn = linear.Layout == WeightLayout.OutIn;
        long rows = outIn ? tensor.Dims[1] : tensor.Dims[0], columns = outIn ? tensor.Dims[0] : tensor.Dims[1];
        if (rows > int.MaxValue || columns > int.MaxValue) { problem = $"{linear.Weight.Name} is too large"; return null; }
        return new WeightMatrix(linear.Weight.Name, tensor.ToSingleArray(), (int)rows, (int)columns, outIn);
    }

    private double? _medianAbs, _maxAbs;

    /// <summary>The median |w| over the whole matrix (the upper median, element n/2 of the ascending order).</summary>
    public double MedianAbs() => _medianAbs ??= ComputeMedianAbs();

    /// <summary>The largest |w| over the whole matrix.</summary>
    public double MaxAbs() => _maxAbs ??= ComputeMaxAbs();

    private double ComputeMedianAbs()
    {
        var abs = new float[_data.Length];
        for (int i = 0; i < abs.Length; i++) abs[i] = Math.Abs(_data[i]);
        return abs.Length == 0 ? 0 : Selection.Nth(abs, abs.Length / 2);
    }

    private double ComputeMaxAbs()
    {
        float max = 0;
        foreach (float w in _data) max = Math.Max(max, Math.Abs(w));
        return max;
    }

    /// <summary>||W[row, columns]||_2 over the column range [first, first + count).</summary>
    public double RowNorm(int row, int first, int count)
    {
        double sum = 0;
        for (int c = first; c < first + count; c++)
        {
            double w = this[row, c];
            sum += w * w;
        }
        return Math.Sqrt(sum);
    }
}

/// <summary>Order statistics without a full sort.</summary>
internal static class Selection
{
    /// <summary>The element of rank <paramref name="k"/> (0-based, ascending); reorders <paramref name="values"/>.</summary>
    public static T Nth<T>(T[] values, int k) where T : System.Numerics.INumber<T>
    {
        int lo = 0, hi = values.Length - 1;
        var rng = new Random(12345);
        while (lo < hi)
        {
            T pivot = values[rng.Next(lo, hi + 1)];
            int i = lo, j = hi;
            while (i <= j)
            {
                while (values[i] < pivot) i++;
                while (values[j] > pivot) j--;
                if (i <= j) { (values[i], values[j]) = (values[j], values[i]); i++; j--; }
            }
            if (k <= j) hi = j;
            else if (k >= i) lo = i;
            else return values[k];
        }
        return values[k];
    }

    /// <summary>The upper median of a sequence (element n/2 of the ascending order), 0 when empty.</summary>
    public static double Median(IEnumerable<double> values)
    {
        var array = values.ToArray();
        return array.Length == 0 ? 0 : Nth(array, array.Length / 2);
    }
}
