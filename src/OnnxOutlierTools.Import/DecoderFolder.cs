using OnnxOutlierTools.Ir;
using OnnxOutlierTools.IO;

namespace OnnxOutlierTools.Import;

/// <summary>Writes a decoder the way exporters lay out a model folder: model.onnx with its weights in
/// external data (model.onnx.data) and an HF-style config.json (bos/eos ids, sizes) beside it.</summary>
public static class DecoderFolder
{
    /// <summary>Flavour names used on command lines.</summary>
    public static IReadOnlyList<string> FlavourNames { get; } = ["decomposed", "decomposed-past", "genai-gqa"];

    public static LlamaOnnxFlavour ParseFlavour(string name) => name switch
    {
        "decomposed" => LlamaOnnxFlavour.Decomposed,
        "decomposed-past" => LlamaOnnxFlavour.DecomposedWithPast,
        "genai-gqa" => LlamaOnnxFlavour.GenAiGqa,
        _ => throw new ArgumentException($"unknown flavour '{name}' ({string.Join(", ", FlavourNames)})"),
    };

    /// <summary>The files a decoder folder holds, in the order they are checked and written.</summary>
    public static IReadOnlyList<string> FileNames { get; } = ["model.onnx", "model.onnx.data", "config.json"];

    /// <summary>Writes model.onnx, model.onnx.data and config.json into <paramref name="outDir"/> (created if
    /// needed). Without <paramref name="overwrite"/> any of them existing is an <see cref="OutputExistsException"/>
    /// raised before anything is written; with it they are replaced, each atomically.</summary>
    public static SaveResult Save(Model model, string outDir, DecoderConfig config, LlamaOnnxFlavour flavour, string dtype, bool overwrite = false)
    {
        CheckTarget(outDir, overwrite);
        var result = ModelWriter.Save(model, Path.Combine(outDir, "model.onnx"), new SaveOptions { Layout = TensorLayout.External, Overwrite = overwrite });
        AtomicTextFile.Write(Path.Combine(outDir, "config.json"), HfConfigJson.Create(config, flavour != LlamaOnnxFlavour.Decomposed, dtype), overwrite);
        return result;
    }

    /// <summary>Refuses a target that is a file, or (without <paramref name="overwrite"/>) holds any of the
    /// <see cref="FileNames"/>: all three are checked before anything is written, so a refused config.json
    /// never leaves a new model beside the old config.</summary>
    public static void CheckTarget(string outDir, bool overwrite)
    {
        ArgumentNullException.ThrowIfNull(outDir);
        if (File.Exists(outDir)) throw new ModelSaveException(outDir, $"is a file; the output is a folder (for {string.Join(", ", FileNames)})");
        if (overwrite) return;
        foreach (string name in FileNames)
            if (File.Exists(Path.Combine(outDir, name))) throw new OutputExistsException(Path.Combine(outDir, name), "already exists");
    }

    /// <summary>Converts a llama2.c checkpoint into a model folder.</summary>
    public static SaveResult FromLlama2c(string checkpoint, string outDir, LlamaOnnxFlavour flavour, bool fp16, bool overwrite = false)
    {
        CheckTarget(outDir, overwrite); // before the (possibly long) conversion
        var weights = Llama2cCheckpoint.Load(checkpoint);
        var options = new LlamaOnnxOptions
        {
            Flavour = flavour,
            WeightType = fp16 ? Tensors.TensorDataType.Float16 : Tensors.TensorDataType.Float,
            Description = $"converted from llama2.c checkpoint {Path.GetFileName(checkpoint)}",
        };
        using var model = LlamaOnnxBuilder.Build(weights, options);
        return Save(model, outDir, weights.Config, flavour, fp16 ? "float16" : "float32", overwrite);
    }
}
