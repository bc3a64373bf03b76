using OnnxOutlierTools.IO;
using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Mitigation.Smoothing;
using OnnxOutlierTools.Quantization.Int4;
using OnnxOutlierTools.Quantization.Int4.Awq;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;
using OnnxOutlierTools.Tests.Mitigation.Measurement;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Quantization;

/// <summary>AWQ on the planted model: the folded (not yet quantized) model computes what the FP32 model computes on ORT; the
/// searched error never exceeds round-to-nearest's (alpha 0 is in the grid); the reported errors equal a float64 recomputation
/// from freshly captured activations and the tests' own int4 formula; the AWQ int4 model runs.</summary>
public class Int4AwqTests(ITestOutputHelper output)
{
    private static readonly Int4Settings Int4 = new(Int4Format.MatMulNBits, 32, symmetric: true);

    [Fact]
    public void Fold_AwqScales_FoldedModelEqualsFp32OnOrt()
    {
        using var temp = new TempFolder("awq-fold");
        var windows = CalibratedModel.Windows(seqLen: 32, maxTokens: 64);
        string folded = temp.Path("folded", "model.onnx");
        AwqReport report;
        using (var model = ModelReader.Load(CalibratedModel.Planted))
        {
            // A fixed alpha: the scales are far from 1 at every site, so the fold is really exercised.
            report = AwqQuantizer.Fold(model, windows, Int4, new AwqSettings { Alphas = [0.5] });
            ModelWriter.Save(model, folded, new SaveOptions { Layout = TensorLayout.External, Durable = false });
        }
        Assert.Equal(5 * 4, report.Folds.Count(f => f.Outcome == FoldOutcome.Exact)); // qkv, gate-up, v-o, up-down per block
        Assert.Contains(report.Folds, f => f.ScaleMax / f.ScaleMin > 2);
        var expected = Int4ModelTests.Run(CalibratedModel.Planted, windows);
        var actual = Int4ModelTests.Run(folded, windows);
        double diff = 0, scale = expected.Max(Math.Abs);
        for (int i = 0; i < expected.Length; i++) diff = Math.Max(diff, Math.Abs(expected[i] - actual[i]));
        output.WriteLine($"folded vs FP32: max |logit diff| {diff:G3} (max |logit| {scale:G3})");
        Assert.True(diff <= 1e-4 * scale, $"the AWQ fold changed the logits by {diff}");
    }

    [Fact]
    public void Search_ErrorNeverAboveRtn_AndEqualsAFloat64Recomputation()
    {
        using var temp = new TempFolder("awq");
        var windows = CalibratedModel.Windows(seqLen: 32, maxTokens: 64);
        using var model = ModelReader.Load(CalibratedModel.Planted);
        var structure = CalibratedModel.Recognize(model);
        var site = FoldSites.Discover(structure).First(s => s.Id == "block1.gate-up");
        var captured = ActivationCapture.Capture(model, [TensorRef.Of(site.Tensor)], windows)[0];
        var linears = site.Consumers.Select(c => new SiteLinear(c.Weight.Name, c.Weight.ConstValue!, c.Layout)).ToList();
        // Every output channel measured (the default samples 128 of them per linear).
        var result = AwqScaleSearch.Search(site.Id, captured, linears, Int4.BlockSize, Int4.Symmetric, new AwqSettings { MaxOutputChannels = 1024 });
        output.WriteLine($"{site.Id}: alpha {result.Alpha}, error {result.Error:G4}, RTN {result.RtnError:G4}, {result.Tokens} tokens");
        Assert.True(result.Error <= result.RtnError, $"AWQ error {result.Error} above RTN {result.RtnError}");
        Assert.Equal(result.Errors.Single(e => e.Alpha == 0).Error, result.RtnError);

        // Recomputed in float64 with the tests' formula: X / s against Q(diag(s) W), every token, every output channel.
        double Recompute(IReadOnlyList<double> s)
        {
            double total = 0;
            foreach (var linear in site.Consumers)
            {
                var w = linear.Weight.ConstValue!.ToSingleArray();
                int rows = (int)linear.Weight.ConstValue!.Dims[0], columns = (int)linear.Weight.ConstValue!.Dims[1];
                bool inOut = linear.Layout == WeightLayout.InOut;
                int k = inOut ? rows : columns, n = inOut ? columns : rows;
                var scaled = new float[w.Length];
                for (int r = 0; r < rows; r++)
                    for (int c = 0; c < columns; c++) scaled[r * columns + c] = w[r * columns + c] * (float)s[inOut ? r : c];
                var deq = Int4Reference.Dequantize(scaled, rows, columns, inOut ? 0 : 1, Int4.BlockSize, Int4.Symmetric, TensorDataType.Float);
                double error = 0, norm = 0;
                for (int t = 0; t < captured.RowCount; t++)
                {
                    var x = captured.Row(t);
                    for (int o = 0; o < n; o++)
                    {
                        double y = 0, yq = 0;
                        for (int j = 0; j < k; j++)
                        {
                            y += (double)x[j] * w[inOut ? j * columns + o : o * columns + j];
                            yq += (double)(x[j] / (float)s[j]) * deq[o, j];
                        }
                        error += (yq - y) * (yq - y);
                        norm += y * y;
                    }
                }
                total += error / norm;
            }
            return total;
        }
        Assert.Equal(Recompute(Enumerable.Repeat(1.0, captured.Channels).ToArray()), result.RtnError, result.RtnError * 1e-3);
        Assert.Equal(Recompute(result.Scales), result.Error, result.Error * 1e-3);
    }

    [Fact]
    public void Quantize_Awq_EverySiteAtMostRtnAndTheModelRuns()
    {
        using var temp = new TempFolder("awq-q");
        var windows = CalibratedModel.Windows(seqLen: 32, maxTokens: 64);
        string path = temp.Path("awq", "model.onnx");
        using (var model = ModelReader.Load(CalibratedModel.Planted))
        {
            var (awq, int4) = AwqQuantizer.Quantize(model, windows, Int4, new AwqSettings { Alphas = [0, 0.2, 0.4, 0.6, 0.8, 1] });
            foreach (var site in awq.Sites)
            {
                output.WriteLine($"{site.Site}: alpha {site.Alpha:G2}, int4 output error {site.Error:G4} (RTN {site.RtnError:G4})");
                Assert.True(site.Error <= site.RtnError, site.Site);
            }
            Assert.Equal(20, awq.Sites.Count);
            Assert.Equal(35, int4.QuantizedCount);
            ModelWriter.Save(model, path, new SaveOptions { Layout = TensorLayout.External, Durable = false });
        }
        var logits = Int4ModelTests.Run(path, windows);
        Assert.All(logits, v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void Quantize_AlreadyQuantizedModel_OneLine()
    {
        var windows = CalibratedModel.Windows(seqLen: 16, maxTokens: 16);
        using var model = ModelReader.Load(CalibratedModel.Planted);
        Int4Quantizer.Quantize(model, Int4);
        var again = Assert.Throws<Int4QuantizationException>(() => Int4Quantizer.Quantize(model, Int4, display: "q.onnx"));
        Assert.StartsWith("q.onnx: no linear can be quantized", again.Message);
        Assert.Contains("already quantized", again.Message);
        var awq = Assert.Throws<Int4QuantizationException>(() => AwqQuantizer.Fold(model, windows, Int4, display: "q.onnx"));
        Assert.StartsWith("q.onnx: ", awq.Message);
        Assert.Contains("already quantized", awq.Message);
        Assert.DoesNotContain('\n', again.Message + awq.Message);
    }
}
