using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Mitigation.Fp16Safe;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Mitigation.Fp16Safe;

public class PowerOfTwoTests
{
    [Theory]
    [InlineData(100, 16376, 0)]
    [InlineData(16376, 16376, 1)]
    [InlineData(153600, 16376, 4)]
    [InlineData(1e9, 16376, 16)]
    public void ExponentToFit_SmallestPowerBelowTheLimit(double max, double limit, int k)
    {
        Assert.Equal(k, PowerOfTwo.ExponentToFit(max, limit));
        Assert.True(max * Math.ScaleB(1, -k) < limit);
        if (k > 0) Assert.True(max * Math.ScaleB(1, -(k - 1)) >= limit);
    }

    [Fact]
    public void FirstInexact_Fp16PowerOfTwoFold_IsExactUnlessSubnormalOrOverflow()
    {
        var values = new Half[] { (Half)1.5f, (Half)(-3.25f), (Half)1000f, (Half)0.0625f, (Half)0f, (Half)6e-5f };
        var tensor = ArrayTensor.Create<Half>(values, 2, 3);
        double[] columns = [0.25, 4, 1];
        Assert.Null(ExactScaleCheck.FirstInexact(tensor, ScaledTensor.ScaleColumns(tensor, columns), null, columns));

        // 1000 * 128 overflows fp16; 6e-5 / 16 is subnormal and loses mantissa bits.
        double[] over = [1, 1, 128];
        Assert.Contains("[0, 2]", ExactScaleCheck.FirstInexact(tensor, ScaledTensor.ScaleColumns(tensor, over), null, over));
        double[] under = [1, 1, 1.0 / 1024];
        Assert.Contains("[1, 2]", ExactScaleCheck.FirstInexact(tensor, ScaledTensor.ScaleColumns(tensor, under), null, under));
    }
}
