using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Mitigation;

public class ScaledTensorTests
{
    private static float[] Values(int n) => Enumerable.Range(0, n).Select(i => (float)Math.Sin(i * 0.37) * (1 + i % 7)).ToArray();

    [Theory]
    [InlineData(TensorDataType.Float)]
    [InlineData(TensorDataType.Float16)]
    [InlineData(TensorDataType.BFloat16)]
    public void RowsAndColumns_MatchAFloat64Reference_RoundedOnce(TensorDataType type)
    {
        const int rows = 5, columns = 7;
        var source = Stored(type, Values(rows * columns), rows, columns);
        var original = source.ToSingleArray();
        double[] r = [0.5, 2, 3, 0.25, 1.5], c = [1, 2, 4, 0.5, 0.125, 3, 7];
        var once = ScaledTensor.Scale(source, r, c);
        // Two folds compose onto the source: the same bytes as one fold by the products.
        var twice = ScaledTensor.ScaleColumns(ScaledTensor.ScaleRows(source, r), c);
        Assert.True(once.DataEquals(twice));
        var got = once.ToSingleArray();
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < columns; j++)
            {
                float expected = RoundTo(type, (float)(original[i * columns + j] * (r[i] * c[j])));
                Assert.Equal(expected, got[i * columns + j]);
            }
        Assert.Same(source, ((ScaledTensor)once).Source);
    }

    [Fact]
    public void ChunkedReads_AnyAlignedOffset_AgreeWithTheWholeRead()
    {
        const int rows = 9, columns = 11;
        var source = ArrayTensor.Create<float>(Values(rows * columns), rows, columns);
        var scale = Enumerable.Range(0, columns).Select(j => 1.0 + j).ToArray();
        var scaled = ScaledTensor.ScaleColumns(source, scale);
        var whole = scaled.ToSingleArray();
        for (int start = 0; start < rows * columns; start += 13)
        {
            int n = Math.Min(17, rows * columns - start);
            var part = new float[n];
            scaled.CopyTo<float>(start, part);
            Assert.Equal(whole.AsSpan(start, n).ToArray(), part);
        }
    }

    [Fact]
    public void LargeReads_ScaledOnEveryCore_MatchTheReference()
    {
        // 2,400,000 FLOAT16 elements (4.8 MB): above the parallel slice size, and two chunks of the double-buffered save
        // path (4 MiB, the second partial), so a buffer swapped too early would show as wrong bytes.
        const int rows = 1600, columns = 1500;
        var source = Stored(TensorDataType.Float16, Values(rows * columns), rows, columns);
        var original = source.ToSingleArray();
        var r = Enumerable.Range(0, rows).Select(i => 0.5 + i % 3).ToArray();
        var c = Enumerable.Range(0, columns).Select(j => 0.25 * (1 + j % 9)).ToArray();
        foreach (var scaled in new[] { ScaledTensor.ScaleRows(source, r), ScaledTensor.ScaleColumns(source, c), ScaledTensor.Scale(source, r, c) })
        {
            using var stream = new MemoryStream();
            scaled.CopyTo(stream);
            var got = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(stream.ToArray());
            var s = (ScaledTensor)scaled;
            Assert.Equal(rows * columns, got.Length);
            int wrong = 0, first = -1;
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < columns; j++)
                    if ((Half)(float)(original[i * columns + j] * Factor(s, r, c, i, j)) != got[i * columns + j] && wrong++ == 0) first = i * columns + j;
            Assert.True(wrong == 0, $"{wrong} wrong elements, the first at {first}");
        }
    }

    private static double Factor(ScaledTensor t, double[] r, double[] c, int i, int j) => t.HasRowScale && t.HasColumnScale ? r[i] * c[j] : t.HasRowScale ? r[i] : c[j];

    [Fact]
    public void BadScales_Refused()
    {
        var source = ArrayTensor.Create<float>(Values(6), 2, 3);
        Assert.Throws<ArgumentException>(() => ScaledTensor.ScaleRows(source, [1, 2, 3]));
        Assert.Throws<ArgumentException>(() => ScaledTensor.ScaleColumns(source, [1, 0, 1]));
        Assert.Throws<ArgumentException>(() => ScaledTensor.ScaleColumns(source, [1, double.NaN, 1]));
        Assert.Throws<NotSupportedException>(() => ScaledTensor.ScaleRows(ArrayTensor.Create<long>([1, 2], 2, 1), [1, 1]));
    }

    private static Tensor Stored(TensorDataType type, float[] values, params long[] dims) => type switch
    {
        TensorDataType.Float => ArrayTensor.Create<float>(values, dims),
        TensorDataType.Float16 => ArrayTensor.Create<Half>(values.Select(v => (Half)v).ToArray(), dims),
        _ => ArrayTensor.Create<BFloat16>(values.Select(v => (BFloat16)v).ToArray(), dims),
    };

    private static float RoundTo(TensorDataType type, float v) => type switch
    {
        TensorDataType.Float => v,
        TensorDataType.Float16 => (float)(Half)v,
        _ => (float)(BFloat16)v,
    };
}
