using OnnxOutlierTools.IO;

namespace OnnxOutlierTools.Passes.Fp16;

/// <summary><see cref="Fp16Conversion"/> from file to file (for <c>convert --fp16</c> and the pipeline): load, convert,
/// save through <see cref="ModelWriter"/> (atomic, external data as <paramref name="save"/> says; weights are converted
/// while they are written, never held whole).</summary>
public static class Fp16File
{
    public static (SaveResult Saved, PassResult Conversion) Convert(string input, string output, Fp16Options? options = null, SaveOptions? save = null)
    {
        using var model = ModelReader.Load(input);
        var conversion = model.Apply(new Fp16Conversion(options));
        return (ModelWriter.Save(model, output, save ?? new SaveOptions()), conversion);
    }
}
