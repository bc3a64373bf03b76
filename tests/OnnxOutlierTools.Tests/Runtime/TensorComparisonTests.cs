using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Runtime;

public sealed class TensorComparisonTests
{
    private static TensorData F(params float[] values) => TensorData.Create("y", values, values.Length);

    [Fact]
    public void Compare_SameBytes_IsBitwiseEqual()
    {
        var d = TensorComparison.Compare(F(1, 2, float.NaN), F(1, 2, float.NaN));
        Assert.True(d.BitwiseEqual);
        Assert.Equal(0, d.MaxAbsDiff);
        Assert.True(TensorComparison.BitwiseEqual(F(1, 2), F(1, 2)));
    }

    [Fact]
    public void Compare_OneUlpApart_IsNotBitwiseEqualButTiny()
    {
        float x = 1.5f, next = MathF.BitIncrement(1.5f);
        var d = TensorComparison.Compare(F(0, x, 3), F(0, next, 3));
        Assert.False(d.BitwiseEqual);
        Assert.True(d.ShapeMatches);
        Assert.Equal(next - (double)x, d.MaxAbsDiff);
        Assert.Equal(1, d.WorstIndex);
        Assert.Equal((next - (double)x) / next, d.MaxRelError, 12);
        Assert.True(TensorComparison.AllClose(F(0, x, 3), F(0, next, 3), 0, 1e-6));
        Assert.False(TensorComparison.AllClose(F(0, x, 3), F(0, next, 3), 0, 1e-8));
    }

    [Fact]
    public void Compare_NaNOnOneSide_IsInfiniteDifference()
    {
        var d = TensorComparison.Compare(F(1, 2), F(1, float.NaN));
        Assert.Equal(1, d.NaNMismatches);
        Assert.Equal(double.PositiveInfinity, d.MaxAbsDiff);
        Assert.False(TensorComparison.AllClose(F(1, 2), F(1, float.NaN), 1, 1));
        Assert.True(TensorComparison.AllClose(F(1, float.NaN, float.PositiveInfinity), F(1, float.NaN, float.PositiveInfinity), 0, 0));
    }

    [Fact]
    public void Compare_ShapeOrTypeMismatch_SaysSo()
    {
        var shape = TensorComparison.Compare(F(1, 2, 3, 4), TensorData.Create("y", new float[] { 1, 2, 3, 4 }, 2, 2));
        Assert.False(shape.ShapeMatches);
        Assert.Contains("shape [4] vs [2,2]", shape.ToString());
        var type = TensorComparison.Compare(F(1), TensorData.Create("y", new[] { (Half)1 }, 1));
        Assert.Contains("element type", type.ToString());
    }

    [Fact]
    public void Compare_Float16_ComparesWidenedValues()
    {
        var a = TensorData.Create("h", new[] { (Half)1, (Half)2 }, 2);
        var b = TensorData.Create("h", new[] { (Half)1, (Half)2.001 }, 2);
        Assert.Equal([1f, 2f], a.ToSingleArray());
        var d = TensorComparison.Compare(a, b);
        Assert.Equal((double)(float)(Half)2.001 - 2, d.MaxAbsDiff);
    }

    [Fact]
    public void CompareOutputs_MatchesByNameAndReportsMissing()
    {
        var expected = new[] { F(1).WithName("a"), F(2).WithName("b") };
        var actual = new[] { F(2).WithName("b"), F(1).WithName("a") };
        Assert.True(TensorComparison.Compare(expected, actual).AllBitwiseEqual);
        var missing = TensorComparison.Compare(expected, actual[..1]);
        Assert.False(missing.AllBitwiseEqual);
        Assert.Contains("a: missing", missing.ToString());
    }

    [Fact]
    public void Compare_Integers_ReportExactDifference()
    {
        var d = TensorComparison.Compare(TensorData.Create("ids", new long[] { 1, 5 }, 2), TensorData.Create("ids", new long[] { 1, 8 }, 2));
        Assert.Equal(3, d.MaxAbsDiff);
        Assert.Equal(TensorDataType.Int64, TensorData.Create("ids", new long[] { 1 }, 1).ElementType);
    }
}
