using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Mitigation.Smoothing;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Mitigation;

public class SmoothQuantScaleTests
{
    [Fact]
    public void Scale_IsTheFormula_WithClampedMaxima()
    {
        double[] x = [100, 1, 0, 4], w = [0.5, 2, 1, 0];
        var s = SmoothQuantScale.Compute(x, w, 0.5);
        Assert.Equal(Math.Sqrt(100) / Math.Sqrt(0.5), s[0], 12);
        Assert.Equal(1 / Math.Sqrt(2), s[1], 12);
        Assert.Equal(Math.Sqrt(1e-5), s[2], 12);
        Assert.Equal(2 / Math.Sqrt(1e-5), s[3], 12);
        // alpha 1: all of the activation range moves into the weights; alpha 0: none of it.
        Assert.Equal(100, SmoothQuantScale.Compute(x, w, 1)[0], 12);
        Assert.Equal(2, SmoothQuantScale.Compute(x, w, 0)[0], 12);
        Assert.Throws<ArgumentOutOfRangeException>(() => SmoothQuantScale.Compute(x, w, 1.5));
    }

    [Theory]
    [InlineData(WeightLayout.InOut)]
    [InlineData(WeightLayout.OutIn)]
    public void InputChannelAbsMax_FollowsTheLayout(WeightLayout layout)
    {
        float[] values = [1, -7, 3, 2, -0.5f, 4]; // [2, 3]
        var weight = ArrayTensor.Create<Half>(values.Select(v => (Half)v).ToArray(), 2, 3);
        var max = SmoothQuantScale.InputChannelAbsMax(weight, layout);
        Assert.Equal(layout == WeightLayout.InOut ? [7.0, 4.0] : [2.0, 7.0, 4.0], max);
    }

    /// <summary>The bit-pattern maxima and the maxima derived from a scaled tensor's source equal a float64 maximum over
    /// every element of the tensor as it is saved (NaN skipped, infinities kept, overflow after scaling included), for
    /// every element type, both layouts, widths that are and are not vector multiples, row-only, column-only and both
    /// scales (the last falls back to reading the scaled elements).</summary>
    [Theory]
    [InlineData(TensorDataType.Float, WeightLayout.InOut)]
    [InlineData(TensorDataType.Float, WeightLayout.OutIn)]
    [InlineData(TensorDataType.Float16, WeightLayout.InOut)]
    [InlineData(TensorDataType.Float16, WeightLayout.OutIn)]
    [InlineData(TensorDataType.BFloat16, WeightLayout.InOut)]
    [InlineData(TensorDataType.BFloat16, WeightLayout.OutIn)]
    public void InputChannelAbsMax_EqualsTheElementWiseMaximum_OfPlainAndScaledWeights(TensorDataType type, WeightLayout layout)
    {
        var random = new Random(11);
        foreach (var (rows, columns) in new[] { (37, 53), (16, 64), (3, 1) })
        {
            var values = new float[rows * columns];
            for (int i = 0; i < values.Length; i++) values[i] = (float)((random.NextDouble() - 0.5) * Math.Pow(10, random.Next(-3, 4)));
            values[0] = float.NaN;
            if (values.Length > 5) values[5] = float.NegativeInfinity;
            if (values.Length > 9) values[9] = -30000;   // overflows fp16 when scaled by 4
            var weight = Typed(values, type, rows, columns);
            var rowScale = Enumerable.Range(0, rows).Select(i => i % 3 == 0 ? -4.0 : 0.37 + i).ToArray();
            var columnScale = Enumerable.Range(0, columns).Select(i => i % 4 == 0 ? 4.0 : -0.61 / (1 + i)).ToArray();
            foreach (var tensor in new[] { weight, ScaledTensor.ScaleRows(weight, rowScale), ScaledTensor.ScaleColumns(weight, columnScale),
                ScaledTensor.Scale(ScaledTensor.ScaleRows(weight, rowScale), null, columnScale) })
            {
                var saved = Saved(tensor);
                int channels = layout == WeightLayout.InOut ? rows : columns;
                var expected = new double[channels];
                for (int r = 0; r < rows; r++)
                    for (int c = 0; c < columns; c++)
                    {
                        double v = Math.Abs(saved[r * columns + c]);
                        int channel = layout == WeightLayout.InOut ? r : c;
                        if (v > expected[channel]) expected[channel] = v; // NaN compares false: skipped
                    }
                Assert.Equal(expected, SmoothQuantScale.InputChannelAbsMax(tensor, layout));
            }
        }
    }

    /// <summary>The tensor's elements as saved (its bytes), as float64.</summary>
    private static double[] Saved(Tensor tensor)
    {
        var bytes = new byte[tensor.ByteLength];
        tensor.CopyTo(0, bytes);
        return tensor.DataType switch
        {
            TensorDataType.Float => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray().Select(v => (double)v).ToArray(),
            TensorDataType.Float16 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(bytes).ToArray().Select(v => (double)v).ToArray(),
            _ => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, BFloat16>(bytes).ToArray().Select(v => (double)(float)v).ToArray(),
        };
    }

    private static Tensor Typed(float[] values, TensorDataType type, int rows, int columns) => type switch
    {
        TensorDataType.Float => ArrayTensor.Create(values, rows, columns),
        TensorDataType.Float16 => ArrayTensor.Create(values.Select(v => (Half)v).ToArray(), rows, columns),
        _ => ArrayTensor.Create(values.Select(v => (BFloat16)v).ToArray(), rows, columns),
    };
}
